package agent

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/meshwaf/meshwaf/agentapi"
)

// Protocols, as the latency metric labels them.
const (
	protocolExtAuthz = "ext_authz"
	protocolExtProc  = "ext_proc"
)

// inspector is what both protocol adapters share: the policy lookup, the
// transaction pipeline (exchange), metrics and the audit log. The adapters
// only translate Envoy's messages into exchange calls and verdicts back
// into Envoy's answers.
type inspector struct {
	reg     *Registry
	audit   *AuditLog
	metrics *metrics
	log     *slog.Logger
	now     func() time.Time
	// late counts the phases still running after Envoy got its answer
	// (deadline.go), so that shutdown can let them finish.
	late sync.WaitGroup
	// steps runs the phases that have a deadline; nil starts a goroutine
	// per phase.
	steps *stepRunner
	// shadowSlots bounds the shadow inspections running at once
	// (shadow.go); nil (a zero-capacity channel) shadows nothing.
	shadowSlots chan struct{}
}

// begin finds the policy for r among the calling gateways and starts an
// exchange under it. nil means the request passes uninspected: no policy
// covers it or its policy is Off. begin has then already counted it.
func (in *inspector) begin(gateways []string, r *httpRequest, protocol string) *exchange {
	e := in.reg.Lookup(gateways, r.host)
	switch {
	case e == nil:
		in.metrics.request(noPolicyLabel, noPolicyLabel, verdictNoPolicy)
		return nil
	case e.Policy.GetMode() == agentapi.Mode_MODE_OFF || e.waf == nil:
		in.metrics.request(e.Policy.GetGateway(), e.Policy.GetHost(), verdictOff)
		return nil
	}
	// The transaction itself is made by the first phase, on the worker
	// that runs it (exchange.run): a request waiting for a worker holds no
	// transaction. Coraza pools its transactions, and each keeps its
	// transformation cache at the largest size it reached, megabytes after
	// a large body; made here, every request in the queue would hold one
	// (at 128 in flight the agent reached 725 MiB, docs/decisions.md).
	return &exchange{in: in, entry: e, policy: e.Policy, req: r, protocol: protocol, started: in.now(),
		txID: newTransactionID()}
}

// transactionIDAlphabet and transactionIDLength make ids like Coraza's own.
const (
	transactionIDAlphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	transactionIDLength   = 19
)

// newTransactionID is the id of a transaction not yet made: the audit line
// and the block response carry it even for a request shed before any
// phase ran.
func newTransactionID() string {
	b := make([]byte, transactionIDLength)
	for i := range b {
		b[i] = transactionIDAlphabet[rand.IntN(len(transactionIDAlphabet))]
	}
	return string(b)
}

// record counts a finished exchange and writes its audit line if the
// policy's audit level asks for it.
func (in *inspector) record(x *exchange, v *verdict) {
	p := x.policy
	label := verdictLabel(v.action)
	switch {
	case x.overloaded():
		label = verdictOverloaded
	case x.failed:
		label = verdictError
	}
	in.metrics.request(p.GetGateway(), p.GetHost(), label)
	in.metrics.latency.WithLabelValues(x.protocol).Observe(x.spent.Seconds())
	for _, r := range v.rules {
		in.metrics.ruleHit(r.ID)
	}
	if !shouldAudit(p.GetAudit(), v.action) {
		return
	}
	r := x.req
	rec := &AuditRecord{
		Time:                 x.started.UTC(),
		TransactionID:        v.txID,
		RequestID:            r.requestID,
		Gateway:              p.GetGateway(),
		Host:                 r.host,
		Method:               r.method,
		Path:                 truncate(r.uri, maxAuditPath),
		Client:               r.clientIP,
		SourcePrincipal:      r.sourcePrincipal,
		Policy:               p.GetPolicy(),
		PolicyVersion:        p.GetPolicyVersion(),
		Mode:                 modeName(p.GetMode()),
		Action:               v.action,
		Status:               v.status,
		Reason:               v.reason,
		ResponseStatus:       x.respStatus,
		AnomalyScore:         v.score,
		OutboundAnomalyScore: v.outScore,
		Rules:                v.rules,
	}
	if err := in.audit.Write(rec); err != nil {
		in.log.Error("audit log write failed", "error", err)
	}
}

// recovered turns a panic in a protocol adapter into the answer the mode
// implies: the block response in Prevent (when the policy is known),
// otherwise letting the request through.
func recovered[T any](in *inspector, x *exchange, p any, allow func() T, deny func(verdict) T) T {
	in.log.Error("request handling panicked", "panic", fmt.Sprint(p))
	if x == nil {
		in.metrics.request(noPolicyLabel, noPolicyLabel, verdictError)
		return allow()
	}
	in.metrics.request(x.policy.GetGateway(), x.policy.GetHost(), verdictError)
	if !x.enforced() {
		return allow()
	}
	return deny(verdict{status: int(x.policy.GetBlockResponse().GetStatus())})
}

func verdictLabel(action string) string {
	switch action {
	case actionBlocked:
		return verdictBlocked
	case actionDetected:
		return verdictDetected
	case actionOverloaded:
		return verdictOverloaded
	default:
		return verdictAllowed
	}
}
