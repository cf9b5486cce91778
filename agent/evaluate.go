package agent

import (
	"log/slog"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
)

// Evaluation is what the agent decides for one request, as its audit line
// reports it.
type Evaluation struct {
	// Gateway and Host name the host policy that applied; both are empty
	// when none did (the request passes uninspected), and so is Action.
	Gateway, Host string
	// Policy is the WAFPolicy ("namespace/name") and Mode its mode.
	Policy, Mode string
	// Action is blocked, detected or allowed; empty without a policy or
	// for a policy whose mode is Off.
	Action string
	// Status is what Envoy answers a blocked request.
	Status       int
	AnomalyScore int
	// Rules are the matched rules that carry a message.
	Rules []AuditRule
}

// Evaluate runs one ext_authz request through the agent's transaction
// pipeline, under the policies of reg as the given gateways' proxies call
// it, and returns the agent's decision. It is the ext_authz server's code
// path without the network and without a deadline (an offline evaluation
// is never late), so its verdicts are the running agent's: meshwaf test
// uses it. Nothing is audited or counted.
func Evaluate(reg *Registry, gateways []string, req *authv3.CheckRequest) (Evaluation, error) {
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		return Evaluation{}, err
	}
	in := &inspector{reg: reg, audit: NewAuditLog(nil), metrics: m, log: slog.New(slog.DiscardHandler), now: time.Now}
	r := fromCheckRequest(req)
	x := in.begin(gateways, &r, protocolExtAuthz)
	if x == nil {
		e := Evaluation{}
		if entry := reg.Lookup(gateways, r.host); entry != nil { // a policy in mode Off
			e.Gateway, e.Host = entry.Policy.GetGateway(), entry.Policy.GetHost()
			e.Policy, e.Mode = entry.Policy.GetPolicy(), modeName(entry.Policy.GetMode())
		}
		return e, nil
	}
	x.request(r.body, r.partial)
	v := x.finish()
	p := x.policy
	e := Evaluation{
		Gateway: p.GetGateway(), Host: p.GetHost(), Policy: p.GetPolicy(), Mode: modeName(p.GetMode()),
		Action: v.action, AnomalyScore: v.score, Rules: v.rules,
	}
	if v.denies() {
		e.Status = denialFor(p, v).status
	}
	return e, nil
}
