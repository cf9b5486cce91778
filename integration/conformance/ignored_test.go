package conformance

import (
	"fmt"
	"os"
	"regexp"
	"slices"

	schema "github.com/coreruleset/ftw-tests-schema/v2/types"
	"sigs.k8s.io/yaml"
)

// ignoreFile lists the CRS tests meshwaf does not pass as written, with
// their reasons. It is data rather than code so that the list is easy to
// review on its own.
const ignoreFile = "ignored.yaml"

// categories are the kinds of reasons a test may be ignored or adjusted
// for; the report counts them.
var categories = map[string]string{
	"envoy":     "Envoy rejects or rewrites the request before any filter sees it (the upstream never receives what the test sends either)",
	"reference": "the test expects the CRS reference platform's own behaviour (Apache's status, ModSecurity's messages), not the WAF's; Coraza's own CRS run adjusts the same tests the same way",
	"policy":    "a CRS test-suite setting a WAFPolicy cannot express",
	"audit":     "the test reads log text (the matched data) meshwaf's audit line does not carry",
}

// ignoreEntry is one reason shared by one or more tests. An entry with
// Output is an override: the tests run, with Output replacing what every
// stage expects (go-ftw's platform-override semantics). Without Output the
// tests are ignored.
type ignoreEntry struct {
	Tests     []string       `json:"tests"`
	Protocols []protocol     `json:"protocols,omitempty"` // empty means all
	Category  string         `json:"category"`
	Reason    string         `json:"reason"`
	Output    *schema.Output `json:"output,omitempty"`
}

type ignoreList struct {
	Ignored   []ignoreEntry `json:"ignored"`
	Overrides []ignoreEntry `json:"overrides"`
}

var testIDPattern = regexp.MustCompile(`^\d{6}-\d+$`)

func loadIgnores(path string) (ignoreList, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return ignoreList{}, err
	}
	var l ignoreList
	if err := yaml.UnmarshalStrict(raw, &l); err != nil {
		return ignoreList{}, fmt.Errorf("%s: %w", path, err)
	}
	seen := map[string]bool{}
	for section, entries := range map[string][]ignoreEntry{"ignored": l.Ignored, "overrides": l.Overrides} {
		for i, e := range entries {
			if err := e.validate(section == "overrides", seen); err != nil {
				return ignoreList{}, fmt.Errorf("%s: %s entry %d: %w", path, section, i, err)
			}
		}
	}
	return l, nil
}

func (e ignoreEntry) validate(override bool, seen map[string]bool) error {
	if _, ok := categories[e.Category]; !ok {
		return fmt.Errorf("unknown category %q", e.Category)
	}
	if e.Reason == "" || len(e.Tests) == 0 {
		return fmt.Errorf("needs tests and a reason")
	}
	if override != (e.Output != nil) {
		return fmt.Errorf("overrides need an output, ignores must not have one")
	}
	for _, p := range e.Protocols {
		if p != extAuthz && p != extProc {
			return fmt.Errorf("unknown protocol %q", p)
		}
	}
	for _, id := range e.Tests {
		if !testIDPattern.MatchString(id) {
			return fmt.Errorf("test id %q is not <rule>-<test>", id)
		}
		for _, p := range e.protocols() {
			key := string(p) + "/" + id
			if seen[key] {
				return fmt.Errorf("test %s is listed twice for %s", id, p)
			}
			seen[key] = true
		}
	}
	return nil
}

func (e ignoreEntry) protocols() []protocol {
	if len(e.Protocols) == 0 {
		return []protocol{extAuthz, extProc}
	}
	return e.Protocols
}

// forProtocol maps each test id ignored or overridden for p to its entry.
func (l ignoreList) forProtocol(p protocol) map[string]ignoreEntry {
	out := map[string]ignoreEntry{}
	for _, e := range slices.Concat(l.Ignored, l.Overrides) {
		if slices.Contains(e.protocols(), p) {
			for _, id := range e.Tests {
				out[id] = e
			}
		}
	}
	return out
}
