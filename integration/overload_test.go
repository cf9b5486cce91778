package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/meshwaf/meshwaf/integration/stack"
)

// A request the agent cannot inspect within Envoy's timeout is answered by
// the policy's failure mode, through a real Envoy: Closed gives 503 with
// the agent's "overloaded" body (never the block response's 403), Open lets
// it through; either way the agent audits it as "overloaded" and counts it
// under verdict="overloaded". Large forms stand in for a busy node: with a
// 200 ms timeout, a benign GET is inspected well within it, a 900 KB form
// (about 0.4 s at PL1; Envoy buffers up to 1 MiB for ext_proc) never is;
// the first two hold both of the agent's workers past their deadlines
// (late), the third finds no worker free (shed).
func TestRequestNotInspectedInTimeGoesByTheFailureMode(t *testing.T) {
	bigForm := request{method: http.MethodPost, host: "shop.example.com", target: "/profile",
		contentType: "application/x-www-form-urlencoded", body: largeForm(900 << 10)}
	tests := []struct {
		name        string
		extraSpec   string
		protocol    string // the filter meshwaf.waf must be
		wantStatus  int
		wantBackend bool
	}{
		{"fail closed over ext_authz", "  failureMode: Closed\n" + largeBodies, "ext_authz.v3.ExtAuthz", http.StatusServiceUnavailable, false},
		{"fail open over ext_authz", "  failureMode: Open\n" + largeBodies, "ext_authz.v3.ExtAuthz", http.StatusOK, true},
		{"fail closed over ext_proc", "  failureMode: Closed\n  responseBody:\n    inspect: true\n" + largeBodies, "ext_proc.v3.ExternalProcessor",
			http.StatusServiceUnavailable, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := demoManifests(t)
			p := shopPrevent
			p.extraSpec = tt.extraSpec
			writeFile(t, dir, "wafpolicy.yaml", policyYAML(p))
			s := startStack(t, stack.Config{Manifests: dir, InspectionWorkers: 2, AgentTimeout: 200 * time.Millisecond})
			if got := ecdsFilterType(t, s); !strings.HasSuffix(got, tt.protocol) {
				t.Fatalf("meshwaf.waf is %s, want %s", got, tt.protocol)
			}
			// Requests inspected in time get their verdicts as ever.
			if r := send(t, s, benign); r.status != http.StatusOK {
				t.Errorf("%s: status %d, want 200 (inspected in time)", benign, r.status)
			}
			if r := send(t, s, sqliGET); r.status != http.StatusForbidden {
				t.Errorf("%s: status %d, want 403 (inspected in time)", sqliGET, r.status)
			}

			auditBefore := len(readAudit(t, s))
			backendBefore := s.BackendRequests()
			const sent = 3
			for range sent {
				r := send(t, s, bigForm)
				if r.status != tt.wantStatus {
					t.Errorf("%s: status %d, want %d; body %q", bigForm, r.status, tt.wantStatus, r.body)
				}
				if r.status == http.StatusServiceUnavailable && !strings.Contains(r.body, "overloaded") {
					t.Errorf("503 body %q is not the agent's overloaded answer", r.body)
				}
			}
			if reached := s.BackendRequests() - backendBefore; (reached == sent) != tt.wantBackend {
				t.Errorf("%d of %d requests reached the backend (want all: %v)", reached, sent, tt.wantBackend)
			}
			// The audit lines of inspections that outlasted the timeout come
			// once they completed in the background.
			deadline := time.Now().Add(20 * time.Second)
			var actions []string
			for time.Now().Before(deadline) {
				actions = auditActions(t, readAudit(t, s)[auditBefore:])
				if len(actions) >= sent {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			if want := strings.Repeat("overloaded ", sent); strings.Join(actions, " ")+" " != want {
				t.Errorf("audit actions %v, want %d times overloaded", actions, sent)
			}
			if got := auditReasons(t, readAudit(t, s)[auditBefore:]); got[reasonLate] != 2 || got[reasonShed] != 1 {
				t.Errorf("audit reasons %v, want 2 late and 1 shed", got)
			}
			if got := agentCounter(t, s, "meshwaf_agent_requests_total", `verdict="overloaded"`); got != sent {
				t.Errorf("meshwaf_agent_requests_total{verdict=\"overloaded\"} = %v, want %d", got, sent)
			}
		})
	}
}

// largeForm is a benign urlencoded form of about size bytes, in fields of
// about 4 KB (the CRS limits how many arguments a request may have).
func largeForm(size int) string {
	words := strings.Fields("lovely summer garden flowers bloom bright yellow petals under warm sunshine children played happily beside river")
	v := url.Values{}
	for i := 0; len(v.Encode()) < size; i++ {
		var b strings.Builder
		for j := 0; b.Len() < 4000; j++ {
			b.WriteString(words[(i+j*7)%len(words)] + " ")
		}
		v.Set(fmt.Sprintf("field%d", i), b.String())
	}
	return v.Encode()
}

// largeBodies lets the policy inspect bodies of up to 4 MiB.
const largeBodies = "  requestBody:\n    limitBytes: 4194304\n"

// The agent's audit reasons of overloaded requests.
const (
	reasonLate = "inspection outlasted Envoy's timeout"
	reasonShed = "no CPU free to inspect before Envoy's timeout"
)

func auditReasons(t *testing.T, lines [][]byte) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, line := range lines {
		var a struct {
			Reason string `json:"reason"`
		}
		if err := json.Unmarshal(line, &a); err != nil {
			t.Fatalf("audit line is not JSON: %v", err)
		}
		out[a.Reason]++
	}
	return out
}

func auditActions(t *testing.T, lines [][]byte) []string {
	t.Helper()
	var out []string
	for _, line := range lines {
		var a auditLine
		if err := json.Unmarshal(line, &a); err != nil {
			t.Fatalf("audit line is not JSON: %v", err)
		}
		out = append(out, a.Action)
	}
	return out
}

// agentCounter sums the agent's samples of metric whose labels contain
// label.
func agentCounter(t *testing.T, s *stack.Stack, metric, label string) float64 {
	t.Helper()
	body, err := getBody(context.Background(), s.AgentURL()+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, metric+"{") || !strings.Contains(line, label) {
			continue
		}
		var v float64
		if _, err := fmt.Sscan(line[strings.LastIndex(line, " ")+1:], &v); err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		sum += v
	}
	return sum
}
