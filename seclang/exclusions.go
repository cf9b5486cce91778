package seclang

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/meshwaf/meshwaf/agentapi"
)

// Path-scoped exclusions need rule ids of their own. 400000-419999 is
// unallocated in the ModSecurity rule id registry; meshwaf takes
// 410000-419999 (exclusions, then its fixed rules from 419900, see
// render.go) and ValidateCustomRules keeps custom rules out of it.
const (
	firstMeshwafID   = 410000
	firstExclusionID = firstMeshwafID
	lastExclusionID  = 419899
	lastMeshwafID    = 419999
)

var (
	ruleIDSpec = regexp.MustCompile(`^[0-9]{1,9}(-[0-9]{1,9})?$`)
	// A tag is written unquoted into directives and ctl actions, and
	// Coraza compares it verbatim, so it may hold no quote, comma, space or
	// semicolon. This is the WAFPolicy API's tag pattern.
	tagSpec = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_./-]*$`)
	// A target is a collection, optionally with a key or /regex/ key. Quotes,
	// commas, semicolons and spaces would break out of the directive or
	// action they are written into, so they are refused, as is a final
	// backslash, which would escape the closing quote.
	targetSpec = regexp.MustCompile(`^[A-Za-z_]+(:[^\s,;"']*[^\s,;"'\\])?$`)
)

// renderedExclusions holds directives for the two places exclusions go.
type renderedExclusions struct {
	runtime   []string // before the CRS include
	configure []string // after the CRS and custom rules
}

func renderExclusions(exs []*agentapi.Exclusion) (renderedExclusions, error) {
	var out renderedExclusions
	nextID := firstExclusionID
	for i, ex := range exs {
		if err := checkExclusion(ex); err != nil {
			return out, fmt.Errorf("exclusions[%d]: %w", i, err)
		}
		if len(ex.GetPaths()) == 0 {
			out.configure = append(out.configure, configureTimeExclusion(ex)...)
			continue
		}
		ctl := ctlActions(ex)
		for _, path := range ex.GetPaths() {
			if nextID > lastExclusionID {
				return out, fmt.Errorf("exclusions[%d]: more than %d path-scoped exclusions", i, lastExclusionID-firstExclusionID+1)
			}
			// normalizePath stops "/search/../admin" from borrowing the
			// exclusion of "/search".
			out.runtime = append(out.runtime, fmt.Sprintf(
				"SecRule REQUEST_FILENAME \"@beginsWith %s\" \"id:%d,phase:1,pass,nolog,t:none,t:normalizePath,%s\"",
				path, nextID, strings.Join(ctl, ",")))
			nextID++
		}
	}
	return out, nil
}

// selector is how a directive or ctl action names rules: by id (or id
// range) or by tag. An exclusion's ids and tags together select the union
// of the rules they name.
type selector struct{ by, value string }

func selectors(ex *agentapi.Exclusion) []selector {
	var out []selector
	for _, id := range ex.GetRuleIds() {
		out = append(out, selector{"Id", id})
	}
	for _, tag := range ex.GetTags() {
		out = append(out, selector{"Tag", tag})
	}
	return out
}

// configureTimeExclusion edits the rule set once, at compile time. One id
// per directive, because SecRuleUpdateTargetById stops after its first id.
// Tags stay unquoted: SecRuleRemoveByTag compares its whole argument,
// quotes included.
func configureTimeExclusion(ex *agentapi.Exclusion) []string {
	var lines []string
	for _, s := range selectors(ex) {
		if len(ex.GetTargets()) == 0 {
			lines = append(lines, fmt.Sprintf("SecRuleRemoveBy%s %s", s.by, s.value))
			continue
		}
		for _, t := range ex.GetTargets() {
			lines = append(lines, fmt.Sprintf("SecRuleUpdateTargetBy%s %s \"!%s\"", s.by, s.value, t))
		}
	}
	return lines
}

// ctlActions switch rules (or some of their targets) off for one request.
func ctlActions(ex *agentapi.Exclusion) []string {
	var ctl []string
	for _, s := range selectors(ex) {
		if len(ex.GetTargets()) == 0 {
			ctl = append(ctl, fmt.Sprintf("ctl:ruleRemoveBy%s=%s", s.by, s.value))
			continue
		}
		for _, t := range ex.GetTargets() {
			ctl = append(ctl, fmt.Sprintf("ctl:ruleRemoveTargetBy%s=%s;%s", s.by, s.value, t))
		}
	}
	return ctl
}

// checkExclusion refuses anything that could not be written into a
// directive verbatim. The control plane validates the same fields, but the
// agent must not trust that to keep its rule text well-formed.
func checkExclusion(ex *agentapi.Exclusion) error {
	if len(ex.GetRuleIds()) == 0 && len(ex.GetTags()) == 0 {
		return fmt.Errorf("no rule ids or tags")
	}
	for _, id := range ex.GetRuleIds() {
		if err := checkRuleIDSpec(id); err != nil {
			return err
		}
	}
	for _, tag := range ex.GetTags() {
		if !tagSpec.MatchString(tag) {
			return fmt.Errorf("tag %q is not a rule tag like attack-sqli", tag)
		}
	}
	for _, p := range ex.GetPaths() {
		if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, "\"'\\`") || strings.Contains(p, "%{") || hasSpaceOrControl(p) {
			return fmt.Errorf("path %q is not a plain path prefix starting with /", p)
		}
	}
	for _, t := range ex.GetTargets() {
		if !targetSpec.MatchString(t) {
			return fmt.Errorf("target %q is not a target like ARGS:name", t)
		}
	}
	return nil
}

func checkRuleIDSpec(id string) error {
	if !ruleIDSpec.MatchString(id) {
		return fmt.Errorf("rule id %q is not an id or id range", id)
	}
	lo, hi, isRange := strings.Cut(id, "-")
	start, _ := strconv.Atoi(lo)
	end := start
	if isRange {
		end, _ = strconv.Atoi(hi)
	}
	if start <= 0 || end < start {
		return fmt.Errorf("rule id range %q is empty or starts at 0", id)
	}
	return nil
}

func hasSpaceOrControl(s string) bool {
	for _, r := range s {
		if r <= ' ' || r == 0x7f {
			return true
		}
	}
	return false
}
