package integration

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshwaf/meshwaf/integration/stack"
)

// rejection is the control plane's log line for a manifest it cannot use
// (docs/architecture.md): msg "manifest rejected", the file, the reason.
type rejection struct {
	Msg   string `json:"msg"`
	File  string `json:"file"`
	Error string `json:"error"`
}

// rejectionsSince returns the rejections logged after byte offset off of the
// control plane log.
func rejectionsSince(t *testing.T, s *stack.Stack, off int64) []rejection {
	t.Helper()
	b, err := os.ReadFile(s.LogPaths().ControlPlane)
	if err != nil {
		t.Fatal(err)
	}
	if off > int64(len(b)) {
		off = int64(len(b))
	}
	var out []rejection
	sc := bufio.NewScanner(bytes.NewReader(b[off:]))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r rejection
		if json.Unmarshal(sc.Bytes(), &r) == nil && r.Msg == "manifest rejected" {
			out = append(out, r)
		}
	}
	return out
}

func logSize(t *testing.T, s *stack.Stack) int64 {
	t.Helper()
	info, err := os.Stat(s.LogPaths().ControlPlane)
	if err != nil {
		t.Fatal(err)
	}
	return info.Size()
}

// A manifest the control plane cannot use is reported with its file and the
// reason, and the last good configuration stays in force: the attack is
// still blocked and the agent keeps the same policy version.
func TestMalformedManifestKeepsLastGoodConfig(t *testing.T) {
	dir := demoManifests(t)
	good := policyYAML(shopPrevent)
	writeFile(t, dir, "wafpolicy.yaml", good)
	s := startStack(t, stack.Config{Manifests: dir})
	file := filepath.Join(dir, "wafpolicy.yaml")

	tests := map[string]struct {
		content string
		// The reason must mention one of these, so the user can tell
		// what is wrong.
		reasonMentions []string
	}{
		"bad YAML": {
			content:        good + "  exclusions: [ruleIds: {\n",
			reasonMentions: []string{"yaml", "YAML", "line"},
		},
		"unknown mode": {
			content:        policyYAML(policy{name: "shop", namespace: "shop", host: "shop.example.com", mode: "Block"}),
			reasonMentions: []string{"Block"},
		},
		"custom rule that does not compile": {
			content: policyYAML(policy{name: "shop", namespace: "shop", host: "shop.example.com", mode: "Detect",
				extraSpec: "  customRules: |\n    SecRule REQUEST_URI \"@noSuchOperator x\" \"id:10001,phase:1,deny,status:403\"\n"}),
			reasonMentions: []string{"customRules", "noSuchOperator", "nosuchoperator"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			waitStatus(t, s, sqliGET, http.StatusForbidden, hotReloadDeadline)
			version := hostPolicy(t, s, "shop.example.com").PolicyVersion
			off := logSize(t, s)

			writeFile(t, dir, "wafpolicy.yaml", tc.content)
			t.Cleanup(func() { writeFile(t, dir, "wafpolicy.yaml", good) })

			var got rejection
			waitFor(t, 5*time.Second, "the control plane to reject "+file, func() error {
				for _, r := range rejectionsSince(t, s, off) {
					if r.File == file || strings.HasSuffix(r.File, "/wafpolicy.yaml") {
						got = r
						return nil
					}
				}
				return fmt.Errorf("no \"manifest rejected\" line naming %s in the control plane log", file)
			})
			t.Logf("rejected: file=%s error=%s", got.File, got.Error)
			if !mentionsAny(got.Error, tc.reasonMentions) {
				t.Errorf("reason %q mentions none of %q", got.Error, tc.reasonMentions)
			}

			// Give a wrong reaction (dropping the policy, applying half of
			// it) time to reach Envoy and the agent before checking.
			deadline := time.Now().Add(time.Second)
			for time.Now().Before(deadline) {
				if r := send(t, s, sqliGET); r.status != http.StatusForbidden {
					t.Fatalf("%s after the bad edit: status %d, want 403 (last good config)", sqliGET, r.status)
				}
				time.Sleep(100 * time.Millisecond)
			}
			if p := hostPolicy(t, s, "shop.example.com"); p.PolicyVersion != version || p.Mode != "Prevent" {
				t.Errorf("agent policy is version %q mode %q, want the last good %q Prevent", p.PolicyVersion, p.Mode, version)
			}
		})
	}
}

func mentionsAny(s string, words []string) bool {
	for _, w := range words {
		if strings.Contains(s, w) {
			return true
		}
	}
	return false
}
