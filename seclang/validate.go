package seclang

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	coreruleset "github.com/corazawaf/coraza-coreruleset/v4"
	coraza "github.com/corazawaf/coraza/v3"
	"github.com/corazawaf/coraza/v3/experimental"
	"github.com/corazawaf/coraza/v3/types"
)

// forbiddenPrefixes are directives custom rules may not use, lower-cased.
// Mode and body handling belong to the policy's own fields, and directives
// that read or write files would reach the node the agent runs on.
var forbiddenPrefixes = []string{
	"include",
	"secruleengine",
	"secrequestbody",
	"secresponsebody",
	"secaudit",
	"secdebug",
	"secdatadir",
	"sectmpdir",
	"secupload",
}

// reservedRanges are rule ids custom rules may not take, because the
// rendered configuration already uses them.
var reservedRanges = []struct {
	lo, hi int
	owner  string
}{
	{200000, 200999, "the Coraza recommended configuration"},
	{firstMeshwafID, lastMeshwafID, "meshwaf"},
	{900000, 999999, "the OWASP CRS"},
}

// ValidateCustomRules compiles rules on their own (without the CRS, so it is
// cheap) and reports the first problem, naming the offending directive and
// its line. It also refuses forbidden directives and reserved rule ids.
func ValidateCustomRules(rules string) error {
	if strings.TrimSpace(rules) == "" {
		return nil
	}
	if err := checkDirectives(rules); err != nil {
		return err
	}
	var ids []int
	observe := func(r types.RuleMetadata) { ids = append(ids, r.ID()) }
	if err := compile(rules, observe); err != nil {
		return locate(rules, err)
	}
	return checkRuleIDs(ids)
}

// compile turns a parser panic into an error: the rules come from users,
// and the control plane calling this must survive them.
func compile(rules string, observe func(types.RuleMetadata)) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("coraza panicked: %v", p)
		}
	}()
	cfg := coraza.NewWAFConfig().WithRootFS(coreruleset.FS).WithDirectives(rules)
	if observe != nil {
		cfg = experimental.WAFConfigWithRuleObserver(cfg, observe)
	}
	_, err = coraza.NewWAF(cfg)
	return err
}

// locate finds the first directive whose addition makes compilation fail.
// Coraza's errors do not say where they happened, and parsing stops at the
// first bad directive, so failing is monotonic in the number of directives
// compiled and a binary search over prefixes finds it.
func locate(rules string, err error) error {
	ds := directives(rules)
	bad := sort.Search(len(ds), func(i int) bool {
		return compile(joinDirectives(ds[:i+1]), nil) != nil
	})
	if bad == len(ds) {
		return fmt.Errorf("custom rules: %w", err)
	}
	return fmt.Errorf("custom rules line %d (%s): %w", ds[bad].line, abbreviate(ds[bad].text), err)
}

func checkRuleIDs(ids []int) error {
	var errs []error
	for _, id := range ids {
		for _, r := range reservedRanges {
			if id >= r.lo && id <= r.hi {
				errs = append(errs, fmt.Errorf("custom rules: rule id %d is reserved for %s (%d-%d)", id, r.owner, r.lo, r.hi))
			}
		}
	}
	return errors.Join(errs...)
}

// checkDirectives refuses forbidden directives. Render calls it too, so an
// agent never compiles them even if a control plane let them through.
func checkDirectives(rules string) error {
	var errs []error
	for _, d := range directives(rules) {
		name := strings.ToLower(d.name())
		for _, p := range forbiddenPrefixes {
			if strings.HasPrefix(name, p) {
				errs = append(errs, fmt.Errorf("custom rules line %d: directive %q is not allowed in custom rules", d.line, d.name()))
				break
			}
		}
	}
	return errors.Join(errs...)
}

// directive is one logical SecLang directive: physical lines joined where
// they end with a backslash.
type directive struct {
	line int // 1-based line where the directive starts
	text string
}

func (d directive) name() string {
	name, _, _ := strings.Cut(d.text, " ")
	name, _, _ = strings.Cut(name, "\t")
	return name
}

func directives(rules string) []directive {
	var out []directive
	var cur strings.Builder
	start := 0
	for i, raw := range strings.Split(rules, "\n") {
		line := strings.TrimSpace(raw)
		if cur.Len() == 0 {
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			start = i + 1
		}
		if strings.HasSuffix(line, "\\") {
			cur.WriteString(strings.TrimSuffix(line, "\\"))
			cur.WriteString(" ")
			continue
		}
		cur.WriteString(line)
		out = append(out, directive{line: start, text: cur.String()})
		cur.Reset()
	}
	if cur.Len() > 0 {
		out = append(out, directive{line: start, text: cur.String()})
	}
	return out
}

func joinDirectives(ds []directive) string {
	texts := make([]string, len(ds))
	for i, d := range ds {
		texts[i] = d.text
	}
	return strings.Join(texts, "\n")
}

func abbreviate(s string) string {
	const max = 80
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}
