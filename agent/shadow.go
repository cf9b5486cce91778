package agent

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/meshwaf/meshwaf/agentapi"
)

// A policy's shadow is a second configuration (another paranoia level,
// more exclusions) evaluated on the same requests as the policy, to show
// what a change would do on live traffic before it is made. It never
// changes a verdict, and never delays one: it runs after Envoy got its
// answer, on a request the agent already inspected, in a goroutine of its
// own, at most shadowSlots at a time. When all slots are busy the request
// is not shadowed, and the metric counts it as skipped: under load the
// shadow gives way to the inspections Envoy waits for. Its findings are
// audited on lines of their own ("shadow": true, with the transaction id
// of the request's line) and counted by meshwaf_agent_shadow_requests_total.
// The shadow inspects requests only: it reports what its rules would find
// in a request, whichever protocol carried it.

// shadowPolicy is p as its shadow configures it: its rule set, its
// exclusions after p's, in Prevent (so that "would block" is Coraza's
// interruption), without response inspection.
func shadowPolicy(p *agentapi.HostPolicy) *agentapi.HostPolicy {
	s := proto.CloneOf(p)
	s.Crs = p.GetShadow().GetCrs()
	s.Exclusions = append(s.Exclusions, p.GetShadow().GetExclusions()...)
	s.Mode = agentapi.Mode_MODE_PREVENT
	s.ResponseBody = nil
	s.Shadow = nil
	return s
}

// Shadow verdicts, as the metric labels them. Blocked means the shadow
// would have blocked the request.
const shadowSkipped = "skipped"

// startShadow evaluates r under e's shadow, unless every shadow slot is
// busy. txID ties its audit line to the request's.
func (in *inspector) startShadow(e *Entry, r *httpRequest, body []byte, txID string) {
	gateway, host := e.Policy.GetGateway(), e.Policy.GetHost()
	select {
	case in.shadowSlots <- struct{}{}:
	default:
		in.metrics.shadow.WithLabelValues(gateway, host, shadowSkipped).Inc()
		return
	}
	in.late.Add(1)
	go func() {
		defer in.late.Done()
		defer func() { <-in.shadowSlots }()
		defer func() {
			if p := recover(); p != nil {
				in.log.Error("shadow inspection panicked", "policy", e.Name, "panic", fmt.Sprint(p))
			}
		}()
		in.shadow(e, r, body, txID)
	}()
}

// shadow runs the request phases and the logging phase of r under e's
// shadow WAF, then counts and audits what it found.
func (in *inspector) shadow(e *Entry, r *httpRequest, body []byte, txID string) {
	p := e.Policy
	tx := e.shadow.waf.NewTransaction()
	defer tx.Close()
	it := requestHeaders(tx, r)
	if it == nil {
		rb := p.GetRequestBody()
		if !rb.GetInspect() {
			body = nil
		}
		if limit := rb.GetLimitBytes(); int64(len(body)) > limit {
			body = body[:limit]
		}
		if len(body) > 0 && tx.IsRequestBodyAccessible() {
			it, _, _ = tx.WriteRequestBody(body)
		}
		if it == nil {
			it, _ = tx.ProcessRequestBody()
		}
	}
	tx.ProcessLogging()
	rules, score, _ := matched(tx)
	action := actionAllowed
	switch {
	case it != nil:
		action = actionBlocked
	case len(rules) > 0:
		action = actionDetected
	}
	in.metrics.shadow.WithLabelValues(p.GetGateway(), p.GetHost(), action).Inc()
	if action == actionAllowed {
		return
	}
	rec := &AuditRecord{
		Time: in.now().UTC(), TransactionID: txID, RequestID: r.requestID, Gateway: p.GetGateway(), Host: r.host,
		Method: r.method, Path: truncate(r.uri, maxAuditPath), Client: r.clientIP, SourcePrincipal: r.sourcePrincipal,
		Policy: p.GetPolicy(), PolicyVersion: p.GetPolicyVersion(), Mode: modeName(p.GetMode()), Shadow: true,
		Action: action, AnomalyScore: score, Rules: rules,
	}
	if err := in.audit.Write(rec); err != nil {
		in.log.Error("audit log write failed", "error", err)
	}
}
