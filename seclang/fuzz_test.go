package seclang

import (
	"strings"
	"testing"

	"github.com/corazawaf/coraza/v3/types"

	"github.com/meshwaf/meshwaf/agentapi"
)

// FuzzExclusions checks that whatever path and target an exclusion carries,
// Render either refuses it or writes directives that parse into exactly one
// rule per path: no quoting trick can smuggle in a second rule or action.
func FuzzExclusions(f *testing.F) {
	f.Add("942100", "/search", "ARGS:q")
	f.Add("941000-941999", "/a\" \"id:1,deny", "ARGS:/^x\\./")
	f.Add("1", "/%{tx.x}", "REQUEST_HEADERS:x\\")
	f.Add("2", "/ok", "ARGS:a;b")
	f.Fuzz(func(t *testing.T, id, path, target string) {
		ex := []*agentapi.Exclusion{{RuleIds: []string{id}, Paths: []string{path}, Targets: []string{target}}}
		out, err := renderExclusions(ex)
		if err != nil {
			return
		}
		var rules []types.RuleMetadata
		if err := compile(strings.Join(out.runtime, "\n"), func(r types.RuleMetadata) { rules = append(rules, r) }); err != nil {
			t.Fatalf("accepted exclusion renders invalid SecLang: %v\n%s", err, out.runtime)
		}
		if len(rules) != 1 || rules[0].ID() != firstExclusionID {
			t.Fatalf("rendered %d rules, want 1 with id %d:\n%s", len(rules), firstExclusionID, out.runtime)
		}
	})
}
