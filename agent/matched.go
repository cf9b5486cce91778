package agent

import (
	"slices"
	"strconv"

	"github.com/corazawaf/coraza/v3/experimental/plugins/plugintypes"
	"github.com/corazawaf/coraza/v3/types"
	"github.com/corazawaf/coraza/v3/types/variables"
)

// logFlagged is implemented by Coraza's matched rules. A rule marked both
// nolog and noauditlog (CRS initialisation such as 901340) is bookkeeping;
// one that asks to be logged anywhere is meant for a human, and the agent's
// audit line is the only log it has. That includes the CRS's anomaly score
// report 980170 (log, noauditlog), which the CRS regression suite expects.
type logFlagged interface {
	Log() bool
	Audit() bool
}

// matched lists the rules that carry a message and are meant to be logged
// (the findings worth a human's attention), and reads the CRS inbound and
// outbound anomaly scores.
func matched(tx types.Transaction) (rules []AuditRule, inbound, outbound int) {
	rules = []AuditRule{}
	for _, mr := range tx.MatchedRules() {
		if mr.Message() == "" {
			continue
		}
		if lf, ok := mr.(logFlagged); ok && !lf.Log() && !lf.Audit() {
			continue
		}
		r := AuditRule{ID: mr.Rule().ID(), Msg: mr.Message(), Targets: targets(mr)}
		if sev := mr.Rule().Severity(); sev != types.RuleSeverityUnset {
			r.Severity = sev.String()
		}
		rules = append(rules, r)
	}
	inbound = txInt(tx, "blocking_inbound_anomaly_score", "inbound_anomaly_score")
	outbound = txInt(tx, "blocking_outbound_anomaly_score", "outbound_anomaly_score")
	return rules, inbound, outbound
}

// targets names what a rule matched, as exclusions name it ("ARGS_GET:id",
// "REQUEST_HEADERS:user-agent", "REQUEST_FILENAME"), each once, in match
// order: what a person tuning the policy needs to exclude the narrowest
// thing.
func targets(mr types.MatchedRule) []string {
	var out []string
	for _, md := range mr.MatchedDatas() {
		switch md.Variable() {
		case variables.Unknown, variables.MatchedVars, variables.MatchedVar, variables.MatchedVarsNames, variables.MatchedVarName:
			// An action without a variable (a score report), or a chained
			// rule looking at what its first rule matched, which that
			// rule's own targets already name.
			continue
		}
		t := md.Variable().Name()
		if md.Key() != "" {
			t += ":" + md.Key()
		}
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}

// txInt reads the first of the given CRS transaction variables that holds
// a number. Coraza exposes transaction variables only through its plugin
// interface; when that is unavailable the score is reported as 0 rather
// than guessed.
func txInt(tx types.Transaction, keys ...string) int {
	st, ok := tx.(plugintypes.TransactionState)
	if !ok {
		return 0
	}
	txVars := st.Variables().TX()
	for _, key := range keys {
		if vals := txVars.Get(key); len(vals) > 0 {
			if n, err := strconv.Atoi(vals[0]); err == nil {
				return n
			}
		}
	}
	return 0
}
