package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/meshwaf/meshwaf/bench/scenario"
	"github.com/meshwaf/meshwaf/integration/stack"
	"github.com/meshwaf/meshwaf/policytest"
)

// comparedPolicies protect the demo's two hosts at paranoia levels 1 and
// 2 and audit every request, so that each verdict of the running agent
// comes with the rules it matched.
const comparedPolicies = `apiVersion: waf.meshwaf.io/v1alpha1
kind: WAFPolicy
metadata: {name: shop, namespace: shop}
spec:
  targetRefs: [{group: networking.istio.io, kind: Gateway, name: public, namespace: istio-ingress}]
  hosts: [shop.example.com]
  audit: {log: All}
---
apiVersion: waf.meshwaf.io/v1alpha1
kind: WAFPolicy
metadata: {name: api, namespace: api}
spec:
  targetRefs: [{group: networking.istio.io, kind: Gateway, name: public, namespace: istio-ingress}]
  hosts: [api.example.com]
  audit: {log: All}
  crs: {paranoiaLevel: 2}
`

// meshwaf test's verdicts are the running agent's: the bench's five
// scenarios at paranoia levels 1 and 2, sent through Envoy to the agent
// and evaluated offline from the same manifests, get the same action and
// the same matched rules.
func TestPolicyTestAgreesWithTheRunningAgent(t *testing.T) {
	dir := demoManifests(t)
	writeFile(t, dir, "wafpolicy.yaml", comparedPolicies)
	s := startStack(t, stack.Config{Manifests: dir})
	offline, err := policytest.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"shop.example.com", "api.example.com"} {
		for _, sc := range scenario.All() {
			t.Run(fmt.Sprintf("%s %s", host, sc.Name), func(t *testing.T) {
				online := sendScenario(t, s, host, sc)
				u, err := url.Parse("http://gateway" + sc.Target)
				if err != nil {
					t.Fatal(err)
				}
				req := policytest.Request{Method: sc.Method, URL: u, Body: sc.Body,
					Headers: append([][2]string{{"Host", host}}, scenario.BrowserHeaders...)}
				if sc.ContentType != "" {
					req.Headers = append(req.Headers, [2]string{"Content-Type", sc.ContentType})
				}
				eval, err := offline.Evaluate(req, "")
				if err != nil {
					t.Fatal(err)
				}
				got := policytest.NewResult(eval)
				var onlineIDs []int
				for _, r := range online.Rules {
					onlineIDs = append(onlineIDs, r.ID)
				}
				if got.Verdict != online.Action || !slices.Equal(got.RuleIDs(), onlineIDs) || got.AnomalyScore != online.AnomalyScore {
					t.Errorf("meshwaf test: %s, rules %v, score %d; the agent: %s, rules %v, score %d",
						got.Verdict, got.RuleIDs(), got.AnomalyScore, online.Action, onlineIDs, online.AnomalyScore)
				}
				if want := map[bool]string{true: policytest.Blocked, false: policytest.Allowed}[sc.Blocked]; got.Verdict != want {
					t.Errorf("verdict %s, want %s", got.Verdict, want)
				}
			})
		}
	}
}

// sendScenario sends sc to host through the stack's Envoy and returns the
// audit line the agent wrote for it.
func sendScenario(t *testing.T, s *stack.Stack, host string, sc scenario.Scenario) auditLine {
	t.Helper()
	before := len(readAudit(t, s))
	r := request{method: sc.Method, host: host, target: sc.Target, contentType: sc.ContentType, body: string(sc.Body),
		headers: scenario.BrowserHeaders}
	resp, err := trySend(s, r)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[bool]int{true: http.StatusForbidden, false: http.StatusOK}[sc.Blocked]; resp.status != want {
		t.Fatalf("through Envoy: %d, want %d", resp.status, want)
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if lines := readAudit(t, s); len(lines) > before {
			var l auditLine
			if err := json.Unmarshal(lines[before], &l); err != nil {
				t.Fatal(err)
			}
			return l
		}
	}
	t.Fatalf("no audit line for %s", r)
	return auditLine{}
}
