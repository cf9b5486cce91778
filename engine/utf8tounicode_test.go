package engine

import (
	"slices"
	"strings"
	"testing"

	coraza "github.com/corazawaf/coraza/v3"
)

func TestUTF8ToUnicodeReadsOverlongSequencesAsLibmodsecurity(t *testing.T) {
	tests := map[string]struct{ in, want string }{
		"ASCII unchanged":                      {"../etc/passwd", "../etc/passwd"},
		"valid two bytes":                      {"caf\xc3\xa9", "caf%u00e9"},
		"valid three bytes":                    {"\xe2\x82\xac", "%u20ac"},
		"valid four bytes":                     {"\xf0\x9f\x98\x80", "%u1f600"},
		"overlong slash":                       {"..\xc0\xafetc", "..%u002fetc"},
		"overlong backslash":                   {"..\xc1\x9c", "..%u005c"},
		"overlong dot, three bytes":            {"\xe0\x80\xae", "%u002e"},
		"lead byte without continuation drops": {"\xc0.\xc0./", "../"},
		"truncated lead dropped, rest kept":    {"a\xe2\x82", "a\x82"},
		"lone continuation byte kept":          {"a\x80b", "a\x80b"},
		"byte that starts nothing kept":        {"a\xffb", "a\xffb"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, changed, err := utf8ToUnicode(tc.in)
			if err != nil || got != tc.want {
				t.Errorf("utf8ToUnicode(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
			if changed != (got != tc.in) {
				t.Errorf("changed = %v for %q → %q", changed, tc.in, got)
			}
		})
	}
}

// Through the CRS: with the engine installed, a path traversal spelled
// with overlong UTF-8 slashes and dots matches rule 930110, as it does in
// libmodsecurity (Coraza's own transformation reads them as U+FFFD and the
// rule does not match).
func TestCRSSeesOverlongTraversal(t *testing.T) {
	Install()
	waf, err := coraza.NewWAF(coraza.NewWAFConfig().WithRootFS(CRS).WithDirectives(
		"Include @coraza.conf-recommended\nSecRuleEngine DetectionOnly\nInclude @crs-setup.conf.example\nInclude @owasp_crs/*.conf\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, uri := range []string{"/?file=..%c0%af..%c0%afetc%c0%afpasswd", "/?file=%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd", "/?file=..%c1%9cboot.ini"} {
		rules, _ := findings(waf, uri)
		if !slices.ContainsFunc(rules, func(r string) bool { return strings.HasPrefix(r, "930110 ") }) {
			t.Errorf("%s: rules %v, want 930110 among them", uri, rules)
		}
	}
}
