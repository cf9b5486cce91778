package engine

import (
	"io/fs"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	coreruleset "github.com/corazawaf/coraza-coreruleset/v4"
	crstests "github.com/corazawaf/coraza-coreruleset/v4/tests"
	coraza "github.com/corazawaf/coraza/v3"
	"github.com/corazawaf/coraza/v3/experimental/plugins"
	"github.com/corazawaf/coraza/v3/experimental/plugins/plugintypes"
)

// crsPatterns compiles the whole CRS once with a recording @rx operator
// and returns every pattern Coraza hands to @rx, as Coraza passes it.
// Registering the recorder replaces Coraza's @rx for the rest of the test
// process, with the engine's, which the recorder delegates to.
var crsPatterns = sync.OnceValues(func() ([]string, error) {
	var (
		mu   sync.Mutex
		seen = map[string]bool{}
	)
	plugins.RegisterOperator("rx", func(o plugintypes.OperatorOptions) (plugintypes.Operator, error) {
		mu.Lock()
		seen[o.Arguments] = true
		mu.Unlock()
		return newRX(o)
	})
	markInstalled()
	_, err := coraza.NewWAF(coraza.NewWAFConfig().WithRootFS(coreruleset.FS).WithDirectives(
		"Include @coraza.conf-recommended\nInclude @crs-setup.conf.example\nInclude @owasp_crs/*.conf"))
	out := make([]string, 0, len(seen))
	for p := range seen {
		out = append(out, p)
	}
	slices.Sort(out)
	return out, err
})

// crsPayloads are request data and URIs from the CRS regression tests,
// decoded the way the CRS's t:urlDecodeUni would see them, every step-th
// one, plus each of those with a byte that is not UTF-8 inside.
func crsPayloads(t *testing.T, step int) []string {
	t.Helper()
	field := regexp.MustCompile(`^\s*(?:data|uri):\s*"?(.*?)"?\s*$`)
	set := map[string]bool{}
	err := fs.WalkDir(crstests.FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".yaml") {
			return err
		}
		b, err := fs.ReadFile(crstests.FS, path)
		if err != nil {
			return err
		}
		for _, line := range strings.Split(string(b), "\n") {
			if m := field.FindStringSubmatch(line); m != nil && m[1] != "" {
				v := m[1]
				if d, err := url.QueryUnescape(v); err == nil {
					v = d
				}
				set[v] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	all := make([]string, 0, len(set))
	for v := range set {
		all = append(all, v)
	}
	slices.Sort(all)
	var out []string
	for i := 0; i < len(all); i += step {
		v := all[i]
		out = append(out, v, v[:len(v)/2]+"\xff"+v[len(v)/2:])
	}
	return out
}

// TestCRSPatternsAgree evaluates every CRS @rx pattern on CRS regression
// test payloads, with and without a byte that is not UTF-8, and compares
// the engine (RE2 for every value it may take) with Go's regexp, or for
// the patterns Coraza matches over bytes, with binaryregexp.
func TestCRSPatternsAgree(t *testing.T) {
	defer setMinFastLen(0)()
	patterns, err := crsPatterns()
	if err != nil {
		t.Fatal(err)
	}
	step := 3
	if testing.Short() || raceEnabled {
		step = 100
	}
	values := crsPayloads(t, step)
	var withoutRE2, binary int
	for _, pattern := range patterns {
		p, err := compileRX(pattern)
		if err != nil {
			t.Fatalf("%q: %v", pattern, err)
		}
		if p.bytes {
			binary++
		}
		if p.fast == nil {
			withoutRE2++
			t.Logf("RE2 does not compile %q", pattern)
			continue
		}
		std := p.std
		for _, v := range values {
			m, text, rewritten := p.pick(v)
			if got, want := m.MatchString(text), std.MatchString(v); got != want {
				t.Errorf("%.60q on %.60q: engine matches %v, Go's regexp %v", pattern, v, got, want)
			}
			if rewritten {
				continue // captures come from Go's regexp (Evaluate)
			}
			got, want := m.FindStringSubmatchIndex(v), std.FindStringSubmatchIndex(v)
			if !slices.Equal(got, want) {
				t.Errorf("%.60q on %.60q: engine %v, Go's regexp %v", pattern, v, got, want)
			}
		}
	}
	t.Logf("%d patterns (%d over bytes, %d without RE2), %d values", len(patterns), binary, withoutRE2, len(values))
	if len(patterns) < 250 {
		t.Errorf("only %d @rx patterns recorded in the CRS", len(patterns))
	}
}
