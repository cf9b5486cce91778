package agent

import (
	"slices"
	"testing"

	"github.com/meshwaf/meshwaf/agentapi"
)

// Evaluate gives the ext_authz pipeline's decision offline: the verdict,
// the status of a block, the matched rules with what they matched, and
// nothing for a host without policy or a policy that is Off.
func TestEvaluate(t *testing.T) {
	const host = "shop.example.com"
	reg := NewRegistry(sharedCompile)
	prevent, err := reg.Prepare(agentapi.ResourceName(testGateway, host), "1", testPolicy(testGateway, host))
	if err != nil {
		t.Fatal(err)
	}
	off, err := reg.Prepare(agentapi.ResourceName(testGateway, "off.example.com"), "1", testPolicy(testGateway, "off.example.com",
		func(p *agentapi.HostPolicy) { p.Mode = agentapi.Mode_MODE_OFF }))
	if err != nil {
		t.Fatal(err)
	}
	reg.Replace(map[string]*Entry{prevent.Name: prevent, off.Name: off})
	gateways := []string{testGateway}

	e, err := Evaluate(reg, gateways, httpCheck("GET", host, "/?id=1%27%20OR%201=1--", nil, ""))
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(e.Rules, func(r AuditRule) bool { return r.ID == 942100 })
	if e.Action != actionBlocked || e.Status != 403 || e.Host != host || e.Gateway != testGateway || i < 0 || e.AnomalyScore < 5 {
		t.Fatalf("SQLi: %+v", e)
	}
	if got := e.Rules[i].Targets; !slices.Equal(got, []string{"ARGS:id"}) {
		t.Errorf("942100 matched %q, want [ARGS:id]", got)
	}
	for _, r := range e.Rules {
		if r.ID == 980170 && len(r.Targets) != 0 {
			t.Errorf("the score report 980170 names targets %q; it matches no variable", r.Targets)
		}
	}

	if e, _ := Evaluate(reg, gateways, httpCheck("GET", host, "/?id=1", nil, "")); e.Action != actionAllowed || e.Status != 0 || len(e.Rules) != 0 {
		t.Errorf("benign: %+v", e)
	}
	if e, _ := Evaluate(reg, gateways, httpCheck("GET", "other.example.com", "/?id=1%27%20OR%201=1--", nil, "")); e.Action != "" || e.Policy != "" || e.Rules != nil {
		t.Errorf("a host without policy: %+v, want nothing", e)
	}
	if e, _ := Evaluate(reg, gateways, httpCheck("GET", "off.example.com", "/?id=1%27%20OR%201=1--", nil, "")); e.Action != "" || e.Mode != "Off" || e.Host != "off.example.com" {
		t.Errorf("a policy that is Off: %+v", e)
	}
}
