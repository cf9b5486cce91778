package seclang

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshwaf/meshwaf/agentapi"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// goldenPolicies are rendered to testdata/<name>.golden and compiled.
var goldenPolicies = map[string]*agentapi.HostPolicy{
	"defaults": {},
	"detect-pl2-early-blocking": {
		Mode: agentapi.Mode_MODE_DETECT,
		Crs:  &agentapi.CoreRuleSet{ParanoiaLevel: 2, InboundAnomalyThreshold: 10, OutboundAnomalyThreshold: 8, EarlyBlocking: true},
	},
	"off-no-body": {
		Mode:        agentapi.Mode_MODE_OFF,
		RequestBody: &agentapi.RequestBody{Inspect: false},
	},
	"inspect-partial": {
		RequestBody: &agentapi.RequestBody{Inspect: true, LimitBytes: 1 << 20, OverLimit: agentapi.OverLimit_OVER_LIMIT_INSPECT_PARTIAL},
	},
	"exclusions-and-custom-rules": {
		Exclusions: []*agentapi.Exclusion{
			{RuleIds: []string{"942100"}, Paths: []string{"/search"}, Targets: []string{"ARGS:q"}},
			{RuleIds: []string{"941000-941999"}, Paths: []string{"/cms", "/wiki"}},
			{RuleIds: []string{"920350", "913000-913999"}},
			{RuleIds: []string{"942200"}, Targets: []string{"REQUEST_COOKIES:session", "ARGS:/^json\\./"}},
		},
		CustomRules: "# block a bot\nSecRule REQUEST_HEADERS:User-Agent \"@contains badbot\" \\\n    \"id:10001,phase:1,deny,status:403,msg:'bad bot'\"\n",
	},
	"exclusions-by-tag": {
		Exclusions: []*agentapi.Exclusion{
			{Tags: []string{"attack-sqli"}, Paths: []string{"/search"}, Targets: []string{"ARGS:q"}},
			{Tags: []string{"attack-xss", "paranoia-level/2"}, RuleIds: []string{"920000-920999"}, Paths: []string{"/cms"}},
			{Tags: []string{"attack-rce"}},
			{Tags: []string{"OWASP_CRS"}, Targets: []string{"REQUEST_COOKIES:session"}},
		},
	},
	"response-inspection": {
		Crs:          &agentapi.CoreRuleSet{OutboundAnomalyThreshold: 8},
		ResponseBody: &agentapi.ResponseBody{Inspect: true, LimitBytes: 65536},
		CustomRules:  `SecRule RESPONSE_BODY "@contains secret-leak" "id:10100,phase:4,deny,log,msg:'secret in response'"`,
	},
}

func TestRenderGolden(t *testing.T) {
	for name, p := range goldenPolicies {
		t.Run(name, func(t *testing.T) {
			got, err := Render(p)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", name+".golden")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./seclang -update)", err)
			}
			if got != string(want) {
				t.Errorf("Render differs from %s (run go test ./seclang -update and review the diff):\n%s", path, got)
			}
		})
	}
}

// TestRenderCompiles proves every golden rendering is valid for Coraza
// with the full CRS, which is what an agent will do with it.
func TestRenderCompiles(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles the CRS several times")
	}
	for name, p := range goldenPolicies {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			d, err := Render(p)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := compileCRS(d); err != nil {
				t.Fatalf("compile: %v", err)
			}
		})
	}
}

func TestRenderIgnoresIdentity(t *testing.T) {
	a := &agentapi.HostPolicy{Gateway: "ns/a", Host: "a.example.com", Policy: "ns/p", PolicyVersion: "1"}
	b := &agentapi.HostPolicy{Gateway: "ns/b", Host: "*", Policy: "ns/q", PolicyVersion: "2",
		BlockResponse: &agentapi.BlockResponse{Status: 406}, Audit: agentapi.AuditLevel_AUDIT_LEVEL_ALL}
	ra, _ := Render(a)
	rb, _ := Render(b)
	if ra != rb {
		t.Error("policies differing only in identity, block response and audit render differently; their WAFs could not be shared")
	}
}

func TestRenderRejects(t *testing.T) {
	tests := map[string]struct {
		policy  *agentapi.HostPolicy
		wantErr string
	}{
		"rule id that is not a number": {
			policy:  &agentapi.HostPolicy{Exclusions: []*agentapi.Exclusion{{RuleIds: []string{"94x"}}}},
			wantErr: `exclusions[0]: rule id "94x"`,
		},
		"reversed range": {
			policy:  &agentapi.HostPolicy{Exclusions: []*agentapi.Exclusion{{RuleIds: []string{"942999-942000"}}}},
			wantErr: "empty",
		},
		"exclusion without ids": {
			policy:  &agentapi.HostPolicy{Exclusions: []*agentapi.Exclusion{{Paths: []string{"/a"}}}},
			wantErr: "no rule ids or tags",
		},
		"path breaking out of the operator": {
			policy:  &agentapi.HostPolicy{Exclusions: []*agentapi.Exclusion{{RuleIds: []string{"1"}, Paths: []string{`/a" "id:1,deny`}}}},
			wantErr: "not a plain path prefix",
		},
		"path with a macro": {
			policy:  &agentapi.HostPolicy{Exclusions: []*agentapi.Exclusion{{RuleIds: []string{"1"}, Paths: []string{"/%{tx.x}"}}}},
			wantErr: "not a plain path prefix",
		},
		"relative path": {
			policy:  &agentapi.HostPolicy{Exclusions: []*agentapi.Exclusion{{RuleIds: []string{"1"}, Paths: []string{"search"}}}},
			wantErr: "not a plain path prefix",
		},
		"target breaking out of the action list": {
			policy:  &agentapi.HostPolicy{Exclusions: []*agentapi.Exclusion{{RuleIds: []string{"1"}, Targets: []string{"ARGS:q,deny"}}}},
			wantErr: "not a target",
		},
		"tag breaking out of the action list": {
			policy:  &agentapi.HostPolicy{Exclusions: []*agentapi.Exclusion{{Tags: []string{"attack-sqli,deny"}}}},
			wantErr: "not a rule tag",
		},
		"quoted tag": {
			policy:  &agentapi.HostPolicy{Exclusions: []*agentapi.Exclusion{{Tags: []string{`"attack-sqli"`}}}},
			wantErr: "not a rule tag",
		},
		"custom rules switching the engine": {
			policy:  &agentapi.HostPolicy{CustomRules: "SecRuleEngine Off"},
			wantErr: `directive "SecRuleEngine" is not allowed`,
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := Render(tt.policy)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Render error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}
