package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshwaf/meshwaf/integration/stack"
)

// leakRules is a custom response rule: the echo backend repeats the request
// path in its JSON answer, so requesting /secret-leak makes the response
// carry the secret.
const leakRules = `  responseBody:
    inspect: true
  customRules: |
    SecRule RESPONSE_BODY "@contains secret-leak" "id:10100,phase:4,deny,log,msg:'secret in response'"
`

var (
	shopLeakPrevent = policy{name: "shop", namespace: "shop", host: "shop.example.com", mode: "Prevent", extraSpec: leakRules}
	apiLeakDetect   = policy{name: "api", namespace: "api", host: "api.example.com", mode: "Detect", extraSpec: leakRules}
	leakGET         = request{host: "shop.example.com", target: "/secret-leak"}
)

// ecdsFilterType returns the type of the meshwaf.waf configuration Envoy
// holds, from its config dump.
func ecdsFilterType(t *testing.T, s *stack.Stack) string {
	t.Helper()
	typ, err := stack.ECDSFilterType(context.Background(), s.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	return typ
}

// filterCalls counts the ext_authz and ext_proc calls Envoy made.
func filterCalls(t *testing.T, s *stack.Stack) (authz, proc uint64) {
	t.Helper()
	st, err := s.EnvoyStats(context.Background(), `^http\..*\.ext_(authz|proc)\.`)
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range st {
		switch {
		case strings.Contains(name, ".ext_authz."):
			authz += v
		case strings.Contains(name, ".ext_proc.streams_started"):
			proc += v
		}
	}
	return authz, proc
}

// A policy inspecting responses makes the control plane switch the gateway
// to ext_proc over ECDS. Request attacks are still blocked, a response
// carrying a secret is replaced by the block response in Prevent and only
// audited in Detect; with the agent gone the 503 says the WAF is
// unavailable; and turning response inspection off switches back to
// ext_authz without a restart.
func TestExtProcInspectsResponses(t *testing.T) {
	dir := demoManifests(t)
	writeFile(t, dir, "wafpolicy.yaml", policyYAML(shopLeakPrevent, apiLeakDetect))
	s := startStack(t, stack.Config{Manifests: dir})

	if got := ecdsFilterType(t, s); !strings.HasSuffix(got, "ext_proc.v3.ExternalProcessor") {
		t.Fatalf("meshwaf.waf is %s, want ext_proc", got)
	}
	tests := map[string]struct {
		req  request
		want int
	}{
		"benign GET passes with its response":  {benign, http.StatusOK},
		"benign form POST passes":              {request{method: "POST", host: "shop.example.com", target: "/comments", contentType: "application/x-www-form-urlencoded", body: "author=alice&comment=nice+shoes"}, http.StatusOK},
		"SQL injection in the query":           {sqliGET, http.StatusForbidden},
		"XSS in a form POST body":              {xssForm, http.StatusForbidden},
		"secret in the response in Prevent":    {leakGET, http.StatusForbidden},
		"secret in the response in Detect":     {onHost(leakGET, "api.example.com"), http.StatusOK},
		"SQL injection in Detect reaches echo": {onHost(sqliGET, "api.example.com"), http.StatusOK},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			resp := send(t, s, tc.req)
			if resp.status != tc.want {
				t.Fatalf("%s: status %d, want %d; body %q", tc.req, resp.status, tc.want, resp.body)
			}
			switch {
			case tc.want == http.StatusForbidden:
				checkBlockResponse(t, resp)
			case !strings.Contains(resp.body, `"method"`):
				t.Errorf("%s: body %q is not the echo backend's", tc.req, resp.body)
			}
		})
	}

	// The response-side verdicts are in the audit log, with the upstream
	// status and the custom rule.
	waitFor(t, 2*time.Second, "audit lines for the leaks", func() error {
		for host, action := range map[string]string{"shop.example.com": "blocked", "api.example.com": "detected"} {
			if !hasLeakAudit(t, s, host, action) {
				return fmt.Errorf("no %s audit line for %s%s naming rule 10100 and response_status 200", action, host, leakGET.target)
			}
		}
		return nil
	})
	if authz, proc := filterCalls(t, s); proc == 0 || authz != 0 {
		t.Errorf("Envoy counted %d ext_authz and %d ext_proc calls, want ext_proc only", authz, proc)
	}

	// With no agent to answer, a fail-closed ext_proc filter's 503 says the
	// WAF is unavailable, as ext_authz's does (TestAgentKilledUnderLoad).
	if err := s.KillAgent(); err != nil {
		t.Fatal(err)
	}
	if r := send(t, s, benign); r.status != http.StatusServiceUnavailable || !saysUnavailable(r.body) {
		t.Errorf("%s with the agent gone: status %d, body %q; want 503 saying the WAF is unavailable", benign, r.status, r.body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.RestartAgent(ctx); err != nil {
		t.Fatal(err)
	}

	// Without response inspection the gateway goes back to ext_authz.
	writeFile(t, dir, "wafpolicy.yaml", policyYAML(shopPrevent, apiDetect))
	waitStatus(t, s, leakGET, http.StatusOK, hotReloadDeadline)
	if got := ecdsFilterType(t, s); !strings.HasSuffix(got, "ext_authz.v3.ExtAuthz") {
		t.Errorf("after turning response inspection off meshwaf.waf is %s, want ext_authz", got)
	}
	if r := send(t, s, sqliGET); r.status != http.StatusForbidden {
		t.Errorf("%s over ext_authz: status %d, want 403", sqliGET, r.status)
	}
}

func hasLeakAudit(t *testing.T, s *stack.Stack, host, action string) bool {
	t.Helper()
	for _, line := range readAudit(t, s) {
		var a struct {
			auditLine
			ResponseStatus int `json:"response_status"`
		}
		if json.Unmarshal(line, &a) != nil || a.Host != host || a.Path != leakGET.target || a.Action != action {
			continue
		}
		ids := make([]int, 0, len(a.Rules))
		for _, r := range a.Rules {
			ids = append(ids, r.ID)
		}
		if slices.Contains(ids, 10100) && a.ResponseStatus == http.StatusOK {
			return true
		}
	}
	return false
}
