package policytest

import (
	"fmt"
	"io"
	"strings"

	"github.com/meshwaf/meshwaf/agent"
)

// Verdicts, as meshwaf test prints them and --expect names them.
const (
	Blocked     = "blocked"
	Detected    = "detected"
	Allowed     = "allowed"
	Unprotected = "unprotected" // no policy covers the host, or its mode is Off
)

// Result is one request's outcome, as meshwaf test reports it (-o json).
type Result struct {
	Verdict string `json:"verdict"`
	// Status is the answer's status when blocked.
	Status int `json:"status,omitempty"`
	// Policy is the WAFPolicy that applied, on Gateway for Host.
	Policy       string `json:"policy,omitempty"`
	Mode         string `json:"mode,omitempty"`
	Gateway      string `json:"gateway,omitempty"`
	Host         string `json:"host,omitempty"`
	AnomalyScore int    `json:"anomalyScore"`
	// Rules are the matched rules as the agent's audit line lists them.
	Rules []agent.AuditRule `json:"rules"`
}

// NewResult reports an evaluation.
func NewResult(e agent.Evaluation) Result {
	r := Result{Verdict: e.Action, Status: e.Status, Policy: e.Policy, Mode: e.Mode, Gateway: e.Gateway, Host: e.Host,
		AnomalyScore: e.AnomalyScore, Rules: e.Rules}
	if r.Verdict == "" {
		r.Verdict = Unprotected
	}
	if r.Rules == nil {
		r.Rules = []agent.AuditRule{} // "rules": [] rather than null
	}
	return r
}

// RuleIDs are the ids of the matched rules, in order.
func (r Result) RuleIDs() []int {
	ids := make([]int, len(r.Rules))
	for i, m := range r.Rules {
		ids[i] = m.ID
	}
	return ids
}

// WriteText writes r for a person: the verdict and why.
func (r Result) WriteText(w io.Writer) error {
	var b strings.Builder
	switch {
	case r.Policy == "":
		fmt.Fprintf(&b, "%s: no policy covers this host\n", r.Verdict)
	case r.Verdict == Unprotected:
		fmt.Fprintf(&b, "%s: policy %s is Off for %s on gateway %s\n", r.Verdict, r.Policy, r.Host, r.Gateway)
	default:
		status := ""
		if r.Status != 0 {
			status = fmt.Sprintf(" (%d)", r.Status)
		}
		fmt.Fprintf(&b, "%s%s by policy %s (%s) for %s on gateway %s\nanomaly score %d\n",
			r.Verdict, status, r.Policy, r.Mode, r.Host, r.Gateway, r.AnomalyScore)
	}
	for _, m := range r.Rules {
		fmt.Fprintf(&b, "  %d  %s", m.ID, m.Msg)
		if m.Severity != "" {
			fmt.Fprintf(&b, "  [%s]", m.Severity)
		}
		if len(m.Targets) > 0 {
			fmt.Fprintf(&b, "  in %s", strings.Join(m.Targets, ", "))
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}
