package status

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/meshwaf/meshwaf/snapshot"
	"github.com/meshwaf/meshwaf/xds"
)

func TestFleetConvergenceAddsFreshReportsOfTheSameVersion(t *testing.T) {
	now := time.Now()
	own := map[string]xds.PolicyConvergence{
		"shop/shop": {Policy: "shop/shop", Version: "v2", Desired: 2, Applied: 1, PendingCount: 1},
	}
	others := map[string]Report{
		"same version": {Renewed: now.Add(-5 * time.Second), Agents: 3, Policies: map[string]xds.PolicyConvergence{
			"shop/shop": {Version: "v2", Desired: 3, Applied: 2, Rejecting: 1, Rejected: []xds.AgentRejection{{Agent: "node-c", Reason: "bad rule"}}},
			"gone/gone": {Version: "v1", Desired: 3, Applied: 3},
		}},
		"older version": {Renewed: now, Agents: 4, Policies: map[string]xds.PolicyConvergence{
			"shop/shop": {Version: "v1", Desired: 4, Applied: 4},
		}},
		"not rebuilt yet": {Renewed: now, Agents: 5, Policies: map[string]xds.PolicyConvergence{}},
		"stale": {Renewed: now.Add(-reportStaleAfter - time.Second), Agents: 10, Policies: map[string]xds.PolicyConvergence{
			"shop/shop": {Version: "v2", Desired: 10, Applied: 10},
		}},
	}
	got := fleetConvergence(own, others, now)
	want := xds.PolicyConvergence{Policy: "shop/shop", Version: "v2", Desired: 14, Applied: 3, Rejecting: 1, PendingCount: 10,
		Rejected: []xds.AgentRejection{{Agent: "node-c", Reason: "bad rule"}}}
	if c := got["shop/shop"]; c.Desired != want.Desired || c.Applied != want.Applied || c.Rejecting != want.Rejecting ||
		c.PendingCount != want.PendingCount || len(c.Rejected) != 1 || c.Rejected[0] != want.Rejected[0] {
		t.Errorf("got %+v, want %+v", c, want)
	}
	if _, ok := got["gone/gone"]; ok || len(got) != 1 {
		t.Errorf("policies %v: a policy this replica does not serve was added", got)
	}
	if own["shop/shop"].Desired != 2 || own["shop/shop"].Rejected != nil {
		t.Errorf("own view changed: %+v", own["shop/shop"])
	}
}

func TestFleetConvergenceListsBoundedRejections(t *testing.T) {
	many := make([]xds.AgentRejection, xds.MaxListedAgents)
	for i := range many {
		many[i] = xds.AgentRejection{Agent: "own", Reason: "r"}
	}
	own := map[string]xds.PolicyConvergence{"p": {Version: "v", Desired: 20, Rejecting: 20, Rejected: many}}
	others := map[string]Report{"b": {Renewed: time.Now(), Agents: 1, Policies: map[string]xds.PolicyConvergence{
		"p": {Version: "v", Desired: 1, Rejecting: 1, Rejected: []xds.AgentRejection{{Agent: "other"}}},
	}}}
	got := fleetConvergence(own, others, time.Now())["p"]
	if got.Rejecting != 21 || len(got.Rejected) != xds.MaxListedAgents {
		t.Errorf("rejecting %d, %d listed; want 21 and %d", got.Rejecting, len(got.Rejected), xds.MaxListedAgents)
	}
}

// staticFleet is a replica's fixed view: the convergence of one policy,
// whose Desired is also the number of agents connected.
type staticFleet map[string]xds.PolicyConvergence

func (staticFleet) Current() *snapshot.Snapshot                     { return nil }
func (f staticFleet) Convergence() map[string]xds.PolicyConvergence { return f }
func (f staticFleet) Agents() []xds.AgentStatus {
	return make([]xds.AgentStatus, f["shop/shop"].Desired)
}

// Replicas publish into one ConfigMap, a key each, which the reader of
// another replica sees; a replica that stops removes its key, and a report
// not renewed for long is deleted.
func TestReportsRoundTripThroughOneConfigMap(t *testing.T) {
	ctx := context.Background()
	cms := fake.NewSimpleClientset().CoreV1().ConfigMaps("meshwaf-system")
	views := map[string]staticFleet{
		"replica-a": {"shop/shop": {Version: "v2", Desired: 1, Applied: 1, Pending: []string{"dropped"}}},
		"replica-b": {"shop/shop": {Version: "v2", Desired: 2, Applied: 0, PendingCount: 2}},
	}
	stops := map[string]context.CancelFunc{}
	done := map[string]chan error{}
	for replica, view := range views {
		runCtx, cancel := context.WithCancel(ctx)
		finished := make(chan error, 1)
		stops[replica], done[replica] = cancel, finished
		p := NewPublisher(PublisherConfig{ConfigMaps: cms, Replica: replica, Fleet: view})
		go func() { finished <- p.Start(runCtx) }()
	}
	waitReports := func(want int) map[string]Report {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			got, err := readReports(ctx, cms, "leader", time.Now())
			if err == nil && len(got) == want {
				return got
			}
			if time.Now().After(deadline) {
				t.Fatalf("reports %v (error %v), want %d", got, err, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	got := waitReports(2)
	if b := got["replica-b"]; b.Agents != 2 || b.Policies["shop/shop"].PendingCount != 2 {
		t.Errorf("replica-b's report %+v", b)
	}
	if a := got["replica-a"].Policies["shop/shop"]; a.Applied != 1 || a.Pending != nil {
		t.Errorf("replica-a's report %+v: want applied 1 and no pending names", a)
	}

	stops["replica-a"]()
	if err := <-done["replica-a"]; err != nil {
		t.Fatal(err)
	}
	if got := waitReports(1); got["replica-b"].Renewed.IsZero() {
		t.Errorf("after replica-a stopped: %v, want replica-b's only", got)
	}

	stops["replica-b"]()
	<-done["replica-b"]
	if err := patchReport(ctx, cms, "long-gone", &Report{Renewed: time.Now().Add(-reportForgetAfter - time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if got, err := readReports(ctx, cms, "leader", time.Now()); err != nil || len(got) != 0 {
		t.Errorf("reports %v, error %v: want the long-gone one dropped", got, err)
	}
	cm, err := cms.Get(ctx, ReportsConfigMap, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(cm.Data) != 0 {
		t.Errorf("ConfigMap data %v, want every key removed", cm.Data)
	}
}
