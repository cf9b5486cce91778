package tune

import (
	"bufio"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/meshwaf/meshwaf/api/v1alpha1"
)

// Line is the part of an audit line tuning reads.
type Line struct {
	// Number is the line's number in the log.
	Number int    `json:"-"`
	Policy string `json:"policy"`
	Host   string `json:"host"`
	Method string `json:"method"`
	Path   string `json:"path"`
	Action string `json:"action"`
	// Shadow marks a line of the policy's shadow configuration: what the
	// shadow found, not what the policy did, so tuning leaves it out.
	Shadow       bool `json:"shadow"`
	AnomalyScore int  `json:"anomaly_score"`
	Rules        []struct {
		ID       int      `json:"id"`
		Msg      string   `json:"msg"`
		Severity string   `json:"severity"`
		Targets  []string `json:"targets"`
	} `json:"rules"`
}

// ReadLines reads an audit log; lines that are not audit records are an
// error naming their line number.
func ReadLines(r io.Reader) ([]Line, error) {
	var lines []Line
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 4<<20)
	for n := 1; sc.Scan(); n++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" {
			continue
		}
		var l Line
		if err := json.Unmarshal([]byte(text), &l); err != nil || l.Policy == "" {
			return nil, fmt.Errorf("line %d is not an audit record (%v)", n, cmp.Or[error](err, fmt.Errorf("no policy")))
		}
		l.Number = n
		lines = append(lines, l)
	}
	return lines, sc.Err()
}

// detection says whether the policy blocked or detected something in l.
func (l Line) detection() bool {
	return !l.Shadow && (l.Action == "blocked" || l.Action == "detected")
}

// Finding is one rule's matches of one variable at one path, under one
// policy: what one exclusion would stop.
type Finding struct {
	Policy string
	RuleID int
	Msg    string
	Path   string
	Target string
	// Lines counts the audit lines with this finding; Blocked those of
	// them that were blocked.
	Lines, Blocked int
	// Score is what the rule adds to the anomaly score (from its
	// severity).
	Score int
}

// findingKey is what one exclusion stops: a rule's matches of one variable
// at one path, under one policy.
type findingKey struct {
	policy string
	rule   int
	path   string
	target string
}

func (f Finding) key() findingKey { return findingKey{f.Policy, f.RuleID, f.Path, f.Target} }

// path is the request path of l, without its query: exclusions name paths.
func (l Line) path() string {
	path, _, _ := strings.Cut(l.Path, "?")
	return path
}

// requestTargets are the variables of targets a request carried, without
// the transaction variables (TX) only the rules that evaluate the anomaly
// score match.
func requestTargets(targets []string) []string {
	var out []string
	for _, t := range targets {
		if t != "TX" && !strings.HasPrefix(t, "TX:") {
			out = append(out, t)
		}
	}
	return out
}

// Findings groups the detections of lines (blocked and detected ones) by
// policy, rule, path and matched variable, most frequent first. Rules that
// only evaluate the anomaly score (they match transaction variables, or
// nothing) are not findings: they go away with what they count.
func Findings(lines []Line) []Finding {
	byKey := map[findingKey]*Finding{}
	for _, l := range lines {
		if !l.detection() {
			continue
		}
		path := l.path()
		seen := map[findingKey]bool{}
		for _, r := range l.Rules {
			for _, target := range requestTargets(r.Targets) {
				key := findingKey{l.Policy, r.ID, path, target}
				f := byKey[key]
				if f == nil {
					f = &Finding{Policy: l.Policy, RuleID: r.ID, Msg: r.Msg, Path: path, Target: target, Score: severityScore(r.Severity)}
					byKey[key] = f
				}
				if !seen[key] {
					seen[key] = true
					f.Lines++
					if l.Action == "blocked" {
						f.Blocked++
					}
				}
			}
		}
	}
	out := make([]Finding, 0, len(byKey))
	for _, f := range byKey {
		out = append(out, *f)
	}
	slices.SortFunc(out, func(a, b Finding) int {
		return cmp.Or(cmp.Compare(a.Policy, b.Policy), cmp.Compare(b.Lines, a.Lines), cmp.Compare(a.Path, b.Path),
			cmp.Compare(a.RuleID, b.RuleID), cmp.Compare(a.Target, b.Target))
	})
	return out
}

// severityScore is the anomaly score the CRS adds for a rule's severity.
func severityScore(severity string) int {
	switch strings.ToLower(severity) {
	case "critical":
		return 5
	case "error":
		return 4
	case "warning":
		return 3
	case "notice":
		return 2
	}
	return 0
}

// Exclusions are the narrowest exclusions for findings of one policy: one
// per path and matched variable, listing the rules it excludes there.
func Exclusions(findings []Finding) []v1alpha1.Exclusion {
	type key struct{ path, target string }
	rules := map[key][]string{}
	var order []key
	for _, f := range findings {
		k := key{f.Path, f.Target}
		if _, ok := rules[k]; !ok {
			order = append(order, k)
		}
		if id := strconv.Itoa(f.RuleID); !slices.Contains(rules[k], id) {
			rules[k] = append(rules[k], id)
		}
	}
	out := make([]v1alpha1.Exclusion, 0, len(order))
	for _, k := range order {
		ids := rules[k]
		slices.Sort(ids)
		out = append(out, v1alpha1.Exclusion{RuleIDs: ids, Paths: []string{k.path}, Targets: []string{k.target}})
	}
	return out
}

// Replay projects lines onto a policy with the findings excluded: for
// each blocked line, whether it would still be blocked (its anomaly score
// less what the excluded rules added, against threshold), and for each
// detected line whether anything would be left to detect.
type Replay struct {
	Blocked, StillBlocked   int
	Detected, StillDetected int
}

// Project replays lines with findings excluded, under the inbound anomaly
// thresholds of each policy (policies missing from thresholds have the
// CRS default, 5).
func Project(lines []Line, findings []Finding, thresholds map[string]int) Replay {
	excluded := map[findingKey]bool{}
	for _, f := range findings {
		excluded[f.key()] = true
	}
	var rep Replay
	for _, l := range lines {
		if !l.detection() {
			continue
		}
		path := l.path()
		score, left := l.AnomalyScore, 0
		for _, r := range l.Rules {
			targets := requestTargets(r.Targets)
			if len(targets) == 0 {
				continue // a rule that keeps the score
			}
			if slices.ContainsFunc(targets, func(t string) bool { return !excluded[findingKey{l.Policy, r.ID, path, t}] }) {
				left++
			} else {
				score -= severityScore(r.Severity)
			}
		}
		if left == 0 {
			score = 0 // nothing left to score (a rule may have scored more than once)
		}
		threshold := cmp.Or(thresholds[l.Policy], 5)
		if l.Action == "blocked" {
			rep.Blocked++
			if score >= threshold {
				rep.StillBlocked++
			}
		} else {
			rep.Detected++
			if left > 0 {
				rep.StillDetected++
			}
		}
	}
	return rep
}
