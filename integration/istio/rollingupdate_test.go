package istio

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/meshwaf/meshwaf/integration/fixtures"
	"github.com/meshwaf/meshwaf/integration/kube"
)

// An agent update on a node, done as the chart's DaemonSet does it, fails
// no request through the node's gateway. The update settings come from the
// rendered DaemonSet: maxSurge 1 and maxUnavailable 0 (the new agent starts
// before the old one stops), the agent's --drain-delay and the pod's
// terminationGracePeriodSeconds. What the DaemonSet controller, the kubelet
// and the endpoint controller would do, the test does in their order: the
// new pod's endpoint is published once its agent is ready; then the old pod
// is deleted, which marks its endpoint terminating and sends its agent
// SIGTERM at once; its endpoint goes when it has exited. istiod turns the
// endpoints into the gateway's EDS, as in a cluster.
//
// While benign requests and attacks flow through the gateway, every answer
// must be the right verdict (200, 403): no 503, no reset, no attack let
// through. Both agents must have answered, and the old one must have
// exited on its own within the grace period. Then, with the node's last
// agent gone, the gateway's 503 says the WAF is unavailable: the
// EnvoyFilter's reply mapper, as istiod merges it.
func TestIstioAgentRollingUpdateFailsNoRequest(t *testing.T) {
	update := shippedAgentUpdate(t)
	t.Logf("DaemonSet as shipped: maxSurge %s, maxUnavailable %s, drain delay %s, grace %s",
		update.maxSurge, update.maxUnavailable, update.drainDelay, update.grace)
	if update.maxSurge != "1" || update.maxUnavailable != "0" {
		t.Fatalf("the DaemonSet updates with maxSurge %s, maxUnavailable %s: this test knows surge-then-drain (1, 0) only",
			update.maxSurge, update.maxUnavailable)
	}

	c, d := startIstio(t, gatewayNamespace, "shop", "api")
	applyFiles(t, c, "examples/demo/gateway.yaml", "examples/demo/virtualservice.yaml", "examples/demo/wafpolicy.yaml")
	ip, err := PodIP()
	if err != nil {
		t.Fatal(err)
	}
	oldPod := agentPod{name: "meshwaf-agent-old", node: node, ip: ip}
	old := startMeshwafPod(t, c, oldPod, update.drainDelay)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := c.Apply(ctx, []byte(backendEndpoint(ip, old.Ports().Backend))); err != nil {
		t.Fatal(err)
	}
	g := StartGateway(t, c, d, old, GatewayPod{
		Namespace: gatewayNamespace, ServiceAccount: "istio-ingressgateway", Name: "istio-ingressgateway-test",
		Labels: map[string]string{"istio": "ingressgateway", "app": "istio-ingressgateway"},
		Node:   node, IP: ip, BootstrapConfigMap: "meshwaf-bootstrap",
	})
	checkEnforced(t, c, g)

	l := startGatewayLoad(demoGateway, 4)
	time.Sleep(2 * time.Second)

	// Surge: the new pod on the same node (an address of its own), its
	// endpoint published once its agent is ready.
	newPod := agentPod{name: "meshwaf-agent-new", node: node, ip: ExtraPodIP(t, 1)}
	replacement := startMeshwafPod(t, c, newPod, update.drainDelay)
	time.Sleep(time.Second)

	// The old pod is deleted: its endpoint turns terminating and its agent
	// gets SIGTERM, together.
	deleted := time.Now()
	if _, err := c.Apply(ctx, []byte(agentEndpoint(oldPod, old.Ports().Agent, terminatingEndpoint))); err != nil {
		l.Stop()
		t.Fatal(err)
	}
	stopErr := old.TerminateAgent(update.grace)
	exited := time.Since(deleted)
	cs, err := c.Clientset()
	if err != nil {
		l.Stop()
		t.Fatal(err)
	}
	if err := cs.DiscoveryV1().EndpointSlices(meshwafNamespace).Delete(ctx, oldPod.name, metav1.DeleteOptions{}); err != nil {
		l.Stop()
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	answers := l.Stop()

	if stopErr != nil {
		t.Errorf("the old agent did not exit cleanly within the grace period (%s): %v", update.grace, stopErr)
	}
	if exited < update.drainDelay {
		t.Errorf("the old agent exited %s after SIGTERM, before its drain delay (%s)", exited.Round(time.Millisecond), update.drainDelay)
	}
	counts, wrong := map[string]int{}, 0
	for _, a := range answers {
		counts[fmt.Sprintf("%s %d", a.target, a.status)]++
		if want := rightVerdict[a.target]; a.status != want {
			if wrong++; wrong <= 10 {
				t.Errorf("GET %s sent %s after the old pod's deletion: status %d (body %q, error %v), want %d",
					a.target, a.sent.Sub(deleted).Round(time.Millisecond), a.status, a.body, a.err, want)
			}
		}
	}
	if wrong > 0 {
		t.Errorf("%d of %d answers were not the right verdict", wrong, len(answers))
	}
	t.Logf("%d answers; the old agent exited %s after SIGTERM; by request and status: %v",
		len(answers), exited.Round(time.Millisecond), counts)
	for target, want := range rightVerdict {
		if counts[fmt.Sprintf("%s %d", target, want)] < 20 {
			t.Errorf("fewer than 20 right answers to %s: the load did not cover the update", target)
		}
	}
	// Both agents inspected requests of the load: the old one before the
	// update, the new one after it.
	for name, auditLog := range map[string]string{"old": old.LogPaths().Audit, "new": replacement.LogPaths().Audit} {
		audit, err := os.ReadFile(auditLog)
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(string(audit), "load=rolling"); n == 0 {
			t.Errorf("the %s agent audited none of the load's attacks", name)
		} else {
			t.Logf("the %s agent audited %d of the load's attacks", name, n)
		}
	}

	// The node's last agent gone: the gateway fails closed and says why.
	if err := replacement.KillAgent(); err != nil {
		t.Fatal(err)
	}
	code, body, err := getWithBody(demoGateway, host, benign)
	if err != nil || code != http.StatusServiceUnavailable || !strings.Contains(body, `"web application firewall unavailable"`) {
		t.Errorf("GET %s with no agent on the node: status %d, body %q, error %v; want 503 saying the WAF is unavailable", benign, code, body, err)
	}
}

// rightVerdict is what the demo policy answers each request of the load.
var rightVerdict = map[string]int{benign: http.StatusOK, sqli + "&load=rolling": http.StatusForbidden}

// agentUpdate is how the chart's DaemonSet replaces an agent.
type agentUpdate struct {
	maxSurge, maxUnavailable string
	drainDelay, grace        time.Duration
}

// shippedAgentUpdate reads the agent DaemonSet's update settings from the
// chart as rendered into deploy/.
func shippedAgentUpdate(t *testing.T) agentUpdate {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(kube.RepoRoot(), "deploy/kubernetes/30-agent.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range strings.Split(string(raw), "\n---\n") {
		var ds appsv1.DaemonSet
		if err := yaml.Unmarshal([]byte(doc), &ds); err != nil {
			t.Fatal(err)
		}
		if ds.Kind != "DaemonSet" {
			continue
		}
		var u agentUpdate
		if ru := ds.Spec.UpdateStrategy.RollingUpdate; ru != nil && ru.MaxSurge != nil && ru.MaxUnavailable != nil {
			u.maxSurge, u.maxUnavailable = ru.MaxSurge.String(), ru.MaxUnavailable.String()
		}
		if g := ds.Spec.Template.Spec.TerminationGracePeriodSeconds; g != nil {
			u.grace = time.Duration(*g) * time.Second
		}
		for _, arg := range ds.Spec.Template.Spec.Containers[0].Args {
			if v, ok := strings.CutPrefix(arg, "--drain-delay="); ok {
				if u.drainDelay, err = time.ParseDuration(v); err != nil {
					t.Fatalf("the DaemonSet's %s: %v", arg, err)
				}
			}
		}
		if u.grace == 0 || u.drainDelay == 0 {
			t.Fatalf("the DaemonSet sets no terminationGracePeriodSeconds or --drain-delay: %+v", u)
		}
		return u
	}
	t.Fatal("deploy/kubernetes/30-agent.yaml has no DaemonSet")
	return agentUpdate{}
}

// gatewayAnswer is one request of the load and what the gateway answered.
type gatewayAnswer struct {
	target string
	sent   time.Time
	status int
	body   string
	err    error
}

// startGatewayLoad sends benign requests and attacks, in turn, through the
// gateway at base from clients clients until Stop.
func startGatewayLoad(base string, clients int) *fixtures.Load[gatewayAnswer] {
	return fixtures.StartLoad(clients, func(_, n int) gatewayAnswer {
		target := benign
		if n%2 == 1 {
			target = sqli + "&load=rolling"
		}
		sent := time.Now()
		code, body, err := getWithBody(base, host, target)
		return gatewayAnswer{target: target, sent: sent, status: code, body: body, err: err}
	})
}
