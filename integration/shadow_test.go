package integration

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/meshwaf/meshwaf/integration/stack"
)

// A paranoia level 2 shadow beside the demo's level 1 policy, through
// Envoy and the agent: a benign look-alike only level 2 blocks passes,
// an attack is blocked as before, and the shadow's findings are in the
// audit log (lines with "shadow": true) and the agent's metrics.
func TestShadowBesideAPolicy(t *testing.T) {
	dir := demoManifests(t)
	policy, err := os.ReadFile(dir + "/wafpolicy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "wafpolicy.yaml", string(policy)+"  shadow:\n    crs:\n      paranoiaLevel: 2\n")
	s := startStack(t, stack.Config{Manifests: dir})
	lookAlike := request{host: "shop.example.com", target: "/comments?text=" + url.QueryEscape("select the blue ones from the shop")}
	if r := send(t, s, lookAlike); r.status != http.StatusOK {
		t.Fatalf("look-alike: %d, want 200: the shadow must not change the verdict", r.status)
	}
	// One at a time: the agent shadows a request only when a shadow slot
	// is free, and a loaded machine may still be busy with the first.
	first := waitShadowLines(t, s, 1)
	if r := send(t, s, sqliGET); r.status != http.StatusForbidden {
		t.Fatalf("SQLi: %d, want 403", r.status)
	}
	shadowed := waitShadowLines(t, s, 2)
	if first[0].Action != "blocked" || !strings.HasPrefix(first[0].Path, "/comments") || shadowed[1].Action != "blocked" {
		t.Errorf("shadow audit lines: %+v; want the look-alike and the attack, both would-block", shadowed)
	}
	resp, err := http.Get(s.AgentURL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	metrics, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	want := `meshwaf_agent_shadow_requests_total{gateway="istio-ingress/public",host="shop.example.com",verdict="blocked"} 2`
	if !strings.Contains(string(metrics), want) {
		t.Errorf("agent metrics lack %s", want)
	}
}

// waitShadowLines waits until the agent's audit log holds n lines of a
// shadow and returns them.
func waitShadowLines(t *testing.T, s *stack.Stack, n int) []auditLine {
	t.Helper()
	var shadowed []auditLine
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		shadowed = shadowed[:0]
		for _, raw := range readAudit(t, s) {
			var l struct {
				auditLine
				Shadow bool `json:"shadow"`
			}
			if err := json.Unmarshal(raw, &l); err != nil {
				t.Fatal(err)
			}
			if l.Shadow {
				shadowed = append(shadowed, l.auditLine)
			}
		}
		if len(shadowed) >= n {
			return shadowed
		}
	}
	t.Fatalf("%d shadow audit lines within 10s, want %d: %+v", len(shadowed), n, shadowed)
	return nil
}
