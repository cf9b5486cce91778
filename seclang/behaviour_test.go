package seclang

import (
	"net/url"
	"slices"
	"testing"

	coraza "github.com/corazawaf/coraza/v3"

	"github.com/meshwaf/meshwaf/agentapi"
)

// matchedIDs runs a GET through waf and returns the ids of the rules that
// matched and carry a message: the CRS's bookkeeping rules (paranoia level
// skips, initialisation) match on every request and say nothing.
func matchedIDs(t *testing.T, waf coraza.WAF, uri string, headers map[string]string) []int {
	t.Helper()
	tx := waf.NewTransaction()
	defer tx.Close()
	tx.ProcessURI(uri, "GET", "HTTP/1.1")
	tx.AddRequestHeader("Host", "example.com")
	for k, v := range headers {
		tx.AddRequestHeader(k, v)
	}
	tx.ProcessRequestHeaders()
	if _, err := tx.ProcessRequestBody(); err != nil {
		t.Fatal(err)
	}
	var ids []int
	for _, mr := range tx.MatchedRules() {
		if mr.Message() != "" {
			ids = append(ids, mr.Rule().ID())
		}
	}
	return ids
}

func anyIn(ids []int, lo, hi int) bool {
	return slices.ContainsFunc(ids, func(id int) bool { return id >= lo && id <= hi })
}

// TestExclusionBehaviour proves every way an exclusion can name rules (id,
// id range, tag) works with and without a path scope and a target, against
// the real CRS. One WAF holds every exclusion, each on its own path, so the
// CRS compiles once.
func TestExclusionBehaviour(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles the CRS")
	}
	d, err := Render(&agentapi.HostPolicy{Exclusions: []*agentapi.Exclusion{
		{RuleIds: []string{"942000-942999"}, Paths: []string{"/byrange"}},
		{RuleIds: []string{"942000-942999"}, Paths: []string{"/rangetarget"}, Targets: []string{"ARGS:q"}},
		{Tags: []string{"attack-sqli"}, Paths: []string{"/bytag"}},
		{Tags: []string{"attack-sqli"}, Paths: []string{"/tagtarget"}, Targets: []string{"ARGS:q"}},
		{RuleIds: []string{"942100"}, Paths: []string{"/byid"}},
		{RuleIds: []string{"913000-913999"}},
		{Tags: []string{"attack-xss"}, Targets: []string{"ARGS:comment"}},
		{RuleIds: []string{"941000-941999"}, Targets: []string{"ARGS:bio"}},
		{Tags: []string{"attack-rce"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	waf, err := compileCRS(d)
	if err != nil {
		t.Fatal(err)
	}
	// Without exclusions every request below matches its family, so a
	// "no match" is the exclusion's doing.
	plain, err := Render(&agentapi.HostPolicy{})
	if err != nil {
		t.Fatal(err)
	}
	baseline, err := compileCRS(plain)
	if err != nil {
		t.Fatal(err)
	}
	sqli := url.QueryEscape("1' OR 1=1--")
	xss := url.QueryEscape("<script>alert(1)</script>")
	type family struct{ lo, hi int }
	sqliRules, xssRules, rceRules, scannerRules := family{942000, 942999}, family{941000, 941999},
		family{932000, 932999}, family{913000, 913999}
	tests := map[string]struct {
		uri     string
		headers map[string]string
		rules   family
		want    bool // whether a rule of the family must match
	}{
		"no exclusion on an unlisted path":        {uri: "/other?q=" + sqli, rules: sqliRules, want: true},
		"scoped id range removes the rules":       {uri: "/byrange?q=" + sqli, rules: sqliRules},
		"scoped id range with target":             {uri: "/rangetarget?q=" + sqli, rules: sqliRules},
		"scoped id range spares other targets":    {uri: "/rangetarget?id=" + sqli, rules: sqliRules, want: true},
		"scoped tag removes the rules":            {uri: "/bytag?q=" + sqli, rules: sqliRules},
		"scoped tag with target":                  {uri: "/tagtarget?q=" + sqli, rules: sqliRules},
		"scoped tag spares other targets":         {uri: "/tagtarget?id=" + sqli, rules: sqliRules, want: true},
		"scope is a normalized prefix":            {uri: "/byrange/../other?q=" + sqli, rules: sqliRules, want: true},
		"single id leaves the rest of the family": {uri: "/byid?q=" + url.QueryEscape("1 UNION SELECT password FROM users--"), rules: sqliRules, want: true},
		"unscoped id range removes the rules":     {uri: "/", headers: map[string]string{"User-Agent": "nikto"}, rules: scannerRules},
		"unscoped tag with target":                {uri: "/any?comment=" + xss, rules: xssRules},
		"unscoped id range with target":           {uri: "/any?bio=" + xss, rules: xssRules},
		"unscoped exclusions spare other targets": {uri: "/any?text=" + xss, rules: xssRules, want: true},
		"unscoped tag removes the rules":          {uri: "/any?cmd=" + url.QueryEscape(";cat /etc/passwd"), rules: rceRules},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if ids := matchedIDs(t, baseline, tt.uri, tt.headers); !anyIn(ids, tt.rules.lo, tt.rules.hi) {
				t.Fatalf("without exclusions no rule in %d-%d matches (matched %v); the case proves nothing", tt.rules.lo, tt.rules.hi, ids)
			}
			ids := matchedIDs(t, waf, tt.uri, tt.headers)
			if got := anyIn(ids, tt.rules.lo, tt.rules.hi); got != tt.want {
				t.Errorf("a rule in %d-%d matched = %v, want %v (matched %v)", tt.rules.lo, tt.rules.hi, got, tt.want, ids)
			}
		})
	}
}

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
