package integration

import (
	"bufio"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"net/http"
	"path"
	"slices"
	"strings"
	"testing"
	"time"

	crstests "github.com/corazawaf/coraza-coreruleset/v4/tests"
	goyaml "sigs.k8s.io/yaml"

	"github.com/meshwaf/meshwaf/integration/bench/scenario"
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

// crsTestFile is the CRS regression file whose requests are compared: SQL
// injections in form bodies and look-alikes, at paranoia level 1.
const crsTestFile = "REQUEST-942-APPLICATION-ATTACK-SQLI/942100.yaml"

// meshwaf test's verdicts are the running agent's: the bench's five
// scenarios and the requests of one CRS regression file, at paranoia
// levels 1 and 2, sent through Envoy to the agent and evaluated offline
// from the same manifests, get the same action, the same matched rules and
// the same anomaly score.
func TestPolicyTestAgreesWithTheRunningAgent(t *testing.T) {
	dir := demoManifests(t)
	writeFile(t, dir, "wafpolicy.yaml", comparedPolicies)
	s := startStack(t, stack.Config{Manifests: dir})
	offline, err := policytest.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	crs := crsRequests(t, crsTestFile)
	blocked := 0
	for _, host := range []string{"shop.example.com", "api.example.com"} {
		for _, sc := range scenario.All() {
			t.Run(fmt.Sprintf("%s %s", host, sc.Name), func(t *testing.T) {
				req := policytest.Request{Method: sc.Method, Scheme: "http", Authority: "gateway", Target: sc.Target, Body: sc.Body,
					Headers: append([][2]string{{"Host", host}}, scenario.BrowserHeaders...)}
				if sc.ContentType != "" {
					req.Headers = append(req.Headers, [2]string{"Content-Type", sc.ContentType})
				}
				got := compareWithAgent(t, s, offline, req)
				if want := map[bool]string{true: policytest.Blocked, false: policytest.Allowed}[sc.Blocked]; got.Verdict != want {
					t.Errorf("verdict %s, want %s", got.Verdict, want)
				}
			})
		}
		for _, c := range crs {
			t.Run(fmt.Sprintf("%s %s", host, c.name), func(t *testing.T) {
				req := c.req
				req.Headers = append([][2]string{{"Host", host}}, req.Headers...)
				if compareWithAgent(t, s, offline, req).Verdict == policytest.Blocked {
					blocked++
				}
			})
		}
	}
	// The file's requests are attacks: most must be blocked, or the
	// comparison compared nothing.
	if blocked < len(crs) {
		t.Errorf("%d of %d CRS requests blocked at paranoia levels 1 and 2; want at least %d", blocked, 2*len(crs), len(crs))
	}
}

// compareWithAgent sends req through the stack's Envoy, evaluates it
// offline, fails the test where the two differ, and returns the offline
// result.
func compareWithAgent(t *testing.T, s *stack.Stack, offline *policytest.Policies, req policytest.Request) policytest.Result {
	t.Helper()
	online := sendRaw(t, s, req)
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
		t.Errorf("%s %s: meshwaf test: %s, rules %v, score %d; the agent: %s, rules %v, score %d", req.Method, req.Target,
			got.Verdict, got.RuleIDs(), got.AnomalyScore, online.Action, onlineIDs, online.AnomalyScore)
	}
	return got
}

// sendRaw writes req to the stack's Envoy as it is (target and headers
// as given, over one connection), checks that the answer is 403 or 200,
// and returns the audit line the agent wrote for it.
func sendRaw(t *testing.T, s *stack.Stack, req policytest.Request) auditLine {
	t.Helper()
	before := len(readAudit(t, s))
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(s.GatewayURL(), "http://"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\n", req.Method, req.Target)
	for _, h := range req.Headers {
		fmt.Fprintf(&b, "%s: %s\r\n", h[0], h[1])
	}
	if len(req.Body) > 0 {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(req.Body))
	}
	b.WriteString("Connection: close\r\n\r\n")
	b.Write(req.Body)
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, b.String()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusForbidden {
		t.Fatalf("%s %s through Envoy: %d", req.Method, req.Target, resp.StatusCode)
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
	t.Fatalf("no audit line for %s %s", req.Method, req.Target)
	return auditLine{}
}

// crsRequest is one request of a CRS regression test file.
type crsRequest struct {
	name string
	req  policytest.Request
}

// crsRequests reads the requests of a CRS regression test file (from the
// coraza-coreruleset module), without their Host header: each is sent to
// the policies' hosts. Headers are in name order.
func crsRequests(t *testing.T, file string) []crsRequest {
	t.Helper()
	raw, err := fs.ReadFile(crstests.FS, file)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Tests []struct {
			ID     int `json:"test_id"`
			Stages []struct {
				Input struct {
					Method  string            `json:"method"`
					URI     string            `json:"uri"`
					Headers map[string]string `json:"headers"`
					Data    string            `json:"data"`
				} `json:"input"`
			} `json:"stages"`
		} `json:"tests"`
	}
	if err := goyaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	var out []crsRequest
	for _, tc := range doc.Tests {
		for i, st := range tc.Stages {
			in := st.Input
			r := policytest.Request{Method: cmp.Or(in.Method, "GET"), Scheme: "http", Authority: "gateway",
				Target: cmp.Or(in.URI, "/"), Body: []byte(in.Data)}
			for _, k := range slices.Sorted(maps.Keys(in.Headers)) {
				if !strings.EqualFold(k, "Host") && !strings.EqualFold(k, "Content-Length") {
					r.Headers = append(r.Headers, [2]string{k, in.Headers[k]})
				}
			}
			out = append(out, crsRequest{name: fmt.Sprintf("%s test %d stage %d", path.Base(file), tc.ID, i+1), req: r})
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s: no requests", file)
	}
	return out
}
