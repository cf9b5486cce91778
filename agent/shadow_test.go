package agent

import (
	"context"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"

	"github.com/meshwaf/meshwaf/agentapi"
)

// A PL2 shadow beside a PL1 policy: a benign look-alike that only PL2
// blocks passes (the verdict is the policy's), and the shadow's finding is
// audited on a line of its own and counted as would-block; an attack both
// block is counted too; a plain request adds nothing to the audit log.
func TestShadowNeverChangesTheVerdict(t *testing.T) {
	const host = "shop.example.com"
	policy := testPolicy(testGateway, host, func(p *agentapi.HostPolicy) {
		p.Shadow = &agentapi.Shadow{Crs: &agentapi.CoreRuleSet{ParanoiaLevel: 2}}
	})
	in, audit, m := newTestInspector(t, policy)
	in.shadowSlots = make(chan struct{}, 1)
	srv := &authzServer{in: in}
	check := func(target string) codes.Code {
		t.Helper()
		resp, err := srv.Check(gatewayCtx(testGateway), httpCheck("GET", host, target, nil, ""))
		if err != nil {
			t.Fatal(err)
		}
		in.late.Wait() // the shadow runs after the answer
		return codes.Code(resp.GetStatus().GetCode())
	}

	lookAlike := "/comments?text=" + url.QueryEscape("select the blue ones from the shop")
	if got := check(lookAlike); got != codes.OK {
		t.Fatalf("look-alike under the PL1 policy: %v, want OK (the shadow must not block)", got)
	}
	recs := audit.records(t)
	if len(recs) != 1 {
		t.Fatalf("audit lines %d, want 1 (the shadow's): %+v", len(recs), recs)
	}
	rec := recs[0]
	ids := make([]int, 0, len(rec.Rules))
	for _, r := range rec.Rules {
		ids = append(ids, r.ID)
	}
	if !rec.Shadow || rec.Action != actionBlocked || !slices.Contains(ids, 942260) || rec.Policy != policy.GetPolicy() {
		t.Errorf("shadow line: %+v", rec)
	}
	if got := testutil.ToFloat64(m.shadow.WithLabelValues(testGateway, host, actionBlocked)); got != 1 {
		t.Errorf("shadow would-block count %v, want 1", got)
	}

	if got := check("/?id=1%27%20OR%201=1--"); got != codes.PermissionDenied {
		t.Errorf("SQLi: %v, want PermissionDenied", got)
	}
	if got := testutil.ToFloat64(m.shadow.WithLabelValues(testGateway, host, actionBlocked)); got != 2 {
		t.Errorf("shadow would-block count %v after the attack, want 2", got)
	}
	before := len(audit.records(t))
	if got := check("/products?page=2"); got != codes.OK {
		t.Errorf("benign: %v", got)
	}
	if after := len(audit.records(t)); after != before || testutil.ToFloat64(m.shadow.WithLabelValues(testGateway, host, actionAllowed)) != 1 {
		t.Errorf("a benign request: audit lines %d → %d, or not counted as allowed by the shadow", before, after)
	}
}

// With every shadow slot busy a request is not shadowed, only counted as
// skipped, and its verdict does not wait.
func TestShadowGivesWayUnderLoad(t *testing.T) {
	const host = "shop.example.com"
	in, _, m := newTestInspector(t, testPolicy(testGateway, host, func(p *agentapi.HostPolicy) {
		p.Shadow = &agentapi.Shadow{Crs: &agentapi.CoreRuleSet{ParanoiaLevel: 2}}
	}))
	in.shadowSlots = make(chan struct{}, 1)
	in.shadowSlots <- struct{}{} // taken
	ctx, cancel := context.WithTimeout(gatewayCtx(testGateway), 5*time.Second)
	defer cancel()
	if _, err := (&authzServer{in: in}).Check(ctx, httpCheck("GET", host, "/products", nil, "")); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(m.shadow.WithLabelValues(testGateway, host, shadowSkipped)); got != 1 {
		t.Errorf("skipped count %v, want 1", got)
	}
}
