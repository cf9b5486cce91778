package integration

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/meshwaf/meshwaf/integration/stack"
)

// auditLine is the audit record of docs/architecture.md.
type auditLine struct {
	TransactionID string `json:"transaction_id"`
	Gateway       string `json:"gateway"`
	Host          string `json:"host"`
	Method        string `json:"method"`
	Path          string `json:"path"`
	Policy        string `json:"policy"`
	PolicyVersion string `json:"policy_version"`
	Mode          string `json:"mode"`
	Action        string `json:"action"`
	AnomalyScore  int    `json:"anomaly_score"`
	Rules         []struct {
		ID  int    `json:"id"`
		Msg string `json:"msg"`
	} `json:"rules"`
}

// readAudit returns the raw lines of the audit log (none if it does not
// exist yet).
func readAudit(t *testing.T, s *stack.Stack) [][]byte {
	t.Helper()
	b, err := os.ReadFile(s.LogPaths().Audit)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var lines [][]byte
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) > 0 {
			lines = append(lines, bytes.Clone(sc.Bytes()))
		}
	}
	return lines
}

// In Detect mode an attack passes, and the agent writes exactly one JSON
// audit line naming the CRS rules that matched.
func TestDetectAllowsAndAudits(t *testing.T) {
	dir := demoManifests(t)
	writeFile(t, dir, "wafpolicy.yaml", policyYAML(shopDetect))
	s := startStack(t, stack.Config{Manifests: dir})

	// A benign request first: with the default audit level (Detected) it
	// must not be logged, so the count below is the attack's alone.
	if r := send(t, s, benign); r.status != http.StatusOK {
		t.Fatalf("%s: status %d, want 200", benign, r.status)
	}
	before := len(readAudit(t, s))
	backend := s.BackendRequests()

	resp := send(t, s, sqliGET)
	if resp.status != http.StatusOK {
		t.Fatalf("%s in Detect mode: status %d, want 200; body %q", sqliGET, resp.status, resp.body)
	}
	if got := s.BackendRequests(); got != backend+1 {
		t.Errorf("backend saw %d new requests, want 1", got-backend)
	}

	// The line may be written just after the response; wait for it, then
	// a little longer to catch a duplicate.
	deadline := time.Now().Add(2 * time.Second)
	for len(readAudit(t, s)) == before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	lines := readAudit(t, s)[before:]
	if len(lines) != 1 {
		t.Fatalf("%d new audit lines, want exactly 1:\n%s", len(lines), bytes.Join(lines, []byte("\n")))
	}
	t.Logf("audit line: %s", lines[0])
	var a auditLine
	if err := json.Unmarshal(lines[0], &a); err != nil {
		t.Fatalf("audit line is not JSON: %v", err)
	}
	checks := []struct {
		what      string
		got, want any
	}{
		{"action", a.Action, "detected"},
		{"mode", a.Mode, "Detect"},
		{"host", a.Host, "shop.example.com"},
		{"gateway", a.Gateway, "istio-ingress/public"},
		{"policy", a.Policy, "shop/shop"},
		{"method", a.Method, "GET"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("audit %s = %v, want %v", c.what, c.got, c.want)
		}
	}
	if a.TransactionID == "" || a.PolicyVersion == "" {
		t.Errorf("audit line lacks transaction_id or policy_version")
	}
	var ids []int
	sqli := false
	for _, r := range a.Rules {
		ids = append(ids, r.ID)
		// 942xxx is CRS's SQL injection family (942100 is libinjection).
		if r.ID >= 942000 && r.ID < 943000 {
			sqli = true
		}
	}
	if !sqli {
		t.Errorf("audit rules %v name no CRS SQL injection rule (942xxx)", ids)
	}
}
