package seclang

import (
	"net/url"
	"testing"

	"github.com/meshwaf/meshwaf/agentapi"
)

// TestUnscopedExclusionOrdering proves configure-time exclusions are placed
// after the CRS: placed before, they would find no rule to edit and fail.
func TestUnscopedExclusionOrdering(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles the CRS")
	}
	d, err := Render(&agentapi.HostPolicy{Exclusions: []*agentapi.Exclusion{
		{RuleIds: []string{"942100"}, Targets: []string{"ARGS:id"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	waf, err := compileCRS(d)
	if err != nil {
		t.Fatal(err)
	}
	sqli := url.QueryEscape("1' OR 1=1--")
	tests := map[string]struct {
		uri        string
		want942100 bool
	}{
		"excluded target": {"/?id=" + sqli, false},
		"other target":    {"/?name=" + sqli, true},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			tx := waf.NewTransaction()
			defer tx.Close()
			tx.ProcessURI(tt.uri, "GET", "HTTP/1.1")
			tx.AddRequestHeader("Host", "example.com")
			tx.ProcessRequestHeaders()
			_, _ = tx.ProcessRequestBody()
			got := false
			for _, mr := range tx.MatchedRules() {
				got = got || mr.Rule().ID() == 942100
			}
			if got != tt.want942100 {
				t.Errorf("942100 matched = %v, want %v", got, tt.want942100)
			}
		})
	}
}
