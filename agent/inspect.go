package agent

import (
	"net/http"
	"strconv"

	"github.com/corazawaf/coraza/v3/experimental/plugins/plugintypes"
	"github.com/corazawaf/coraza/v3/types"

	"github.com/meshwaf/meshwaf/agentapi"
)

const reasonBodyOverLimit = "request body over limit"

// verdict is the outcome of inspecting one request.
type verdict struct {
	action   string // actionBlocked, actionDetected or actionAllowed
	status   int    // HTTP status of a denial
	location string // redirect target when a rule redirects
	txID     string
	reason   string
	score    int
	rules    []AuditRule
}

// inspect runs the policy's WAF over r. Over-limit bodies are settled by
// the policy before Coraza sees them: Reject denies with 413 in Prevent
// (and is reported as a detection in Detect, which never blocks), while
// InspectPartial inspects the first limit bytes.
func inspect(e *Entry, r *httpRequest) verdict {
	p := e.Policy
	rb := p.GetRequestBody()
	detect := p.GetMode() == agentapi.Mode_MODE_DETECT
	limit := rb.GetLimitBytes()
	overLimit := rb.GetInspect() && (r.partial || int64(len(r.body)) > limit || r.size > limit)
	reject := overLimit && rb.GetOverLimit() != agentapi.OverLimit_OVER_LIMIT_INSPECT_PARTIAL

	tx := e.waf.waf.NewTransaction()
	defer tx.Close()
	v := verdict{txID: tx.ID()}
	if reject && !detect {
		v.action, v.status, v.reason = actionBlocked, http.StatusRequestEntityTooLarge, reasonBodyOverLimit
		return v
	}

	var body []byte
	if rb.GetInspect() {
		body = r.body
		if int64(len(body)) > limit {
			body = body[:limit]
		}
	}
	it := feed(tx, r, body)
	tx.ProcessLogging()
	v.rules, v.score = matched(tx)

	switch {
	case it != nil && !detect:
		v.action, v.status = actionBlocked, int(p.GetBlockResponse().GetStatus())
		if it.Action == "redirect" && it.Data != "" {
			v.status, v.location = redirectStatus(it.Status), it.Data
		}
	case len(v.rules) > 0 || reject:
		v.action = actionDetected
	default:
		v.action = actionAllowed
	}
	if reject {
		v.reason = reasonBodyOverLimit
	}
	return v
}

// auditFlagged is implemented by Coraza's matched rules; rules marked
// noauditlog (CRS initialisation and the 980170 score report) are
// bookkeeping, not findings.
type auditFlagged interface{ Audit() bool }

// matched lists the rules that carry a message and are meant for the audit
// log (the findings worth a human's attention), and reads the CRS inbound
// anomaly score.
func matched(tx types.Transaction) ([]AuditRule, int) {
	rules := []AuditRule{}
	for _, mr := range tx.MatchedRules() {
		if mr.Message() == "" {
			continue
		}
		if af, ok := mr.(auditFlagged); ok && !af.Audit() {
			continue
		}
		r := AuditRule{ID: mr.Rule().ID(), Msg: mr.Message()}
		if sev := mr.Rule().Severity(); sev != types.RuleSeverityUnset {
			r.Severity = sev.String()
		}
		rules = append(rules, r)
	}
	return rules, anomalyScore(tx)
}

// anomalyScore reads the score CRS v4 blocks on. Coraza exposes transaction
// variables only through its plugin interface; when that is unavailable the
// score is reported as 0 rather than guessed.
func anomalyScore(tx types.Transaction) int {
	st, ok := tx.(plugintypes.TransactionState)
	if !ok {
		return 0
	}
	txVars := st.Variables().TX()
	for _, key := range []string{"blocking_inbound_anomaly_score", "inbound_anomaly_score"} {
		if vals := txVars.Get(key); len(vals) > 0 {
			if n, err := strconv.Atoi(vals[0]); err == nil {
				return n
			}
		}
	}
	return 0
}

func redirectStatus(s int) int {
	if s >= 300 && s < 400 {
		return s
	}
	return http.StatusFound
}
