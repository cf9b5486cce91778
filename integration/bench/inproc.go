package bench

import (
	"fmt"

	"github.com/corazawaf/coraza/v3"
	"github.com/corazawaf/coraza/v3/types"

	"github.com/meshwaf/meshwaf/agentapi"
	"github.com/meshwaf/meshwaf/engine"
	"github.com/meshwaf/meshwaf/seclang"
)

// hostPolicy is the policy every mode enforces for paranoia level pl:
// Prevent with otherwise default settings, as a user would write it.
func hostPolicy(pl int32, host string) *agentapi.HostPolicy {
	return &agentapi.HostPolicy{
		Gateway: gatewayName,
		Host:    host,
		Mode:    agentapi.Mode_MODE_PREVENT,
		Crs:     &agentapi.CoreRuleSet{ParanoiaLevel: pl},
	}
}

// compileWAF builds the in-process baseline from the directives the agent
// renders for the same policy, compiled the way the agent compiles them.
func compileWAF(p *agentapi.HostPolicy) (coraza.WAF, error) {
	directives, err := seclang.Render(p)
	if err != nil {
		return nil, err
	}
	engine.Install()
	return coraza.NewWAF(coraza.NewWAFConfig().WithRootFS(engine.CRS).WithDirectives(directives))
}

// inProcess inspects requests the way the agent does for ext_authz: the
// request phases, logging, the matched rules read for the audit line, and
// Close. What Envoy would add to the request (x-forwarded-proto,
// x-request-id) is added here too, so all modes inspect the same headers.
type inProcess struct {
	waf  coraza.WAF
	host string
}

func (p inProcess) send(sc Scenario, seq int) (blocked bool, err error) {
	tx := p.waf.NewTransaction()
	defer tx.Close()
	tx.ProcessConnection("127.0.0.1", 40000+seq%20000, "127.0.0.1", 8080)
	tx.ProcessURI(sc.Target, sc.Method, "HTTP/1.1")
	for _, h := range requestHeaders(sc, p.host, seq) {
		tx.AddRequestHeader(h[0], h[1])
	}
	tx.SetServerName(p.host)
	it := tx.ProcessRequestHeaders()
	if it == nil && len(sc.Body) > 0 && tx.IsRequestBodyAccessible() {
		if it, _, err = tx.WriteRequestBody(sc.Body); err != nil {
			return false, err
		}
	}
	if it == nil {
		if it, err = tx.ProcessRequestBody(); err != nil {
			return false, err
		}
	}
	tx.ProcessLogging()
	_ = auditRules(tx)
	return it != nil, nil
}

// auditRules is the work the agent does for its audit line: the matched
// rules that carry a message and are not marked noauditlog (CRS
// bookkeeping such as 901340).
func auditRules(tx types.Transaction) []string {
	var out []string
	for _, mr := range tx.MatchedRules() {
		if af, ok := mr.(interface{ Audit() bool }); mr.Message() == "" || ok && !af.Audit() {
			continue
		}
		out = append(out, fmt.Sprintf("%d %s", mr.Rule().ID(), mr.Message()))
	}
	return out
}

// findings inspects one request and returns the rules it matched, for the
// harness's check that benign scenarios are benign.
func (p inProcess) findings(sc Scenario) []string {
	tx := p.waf.NewTransaction()
	defer tx.Close()
	tx.ProcessURI(sc.Target, sc.Method, "HTTP/1.1")
	for _, h := range requestHeaders(sc, p.host, 0) {
		tx.AddRequestHeader(h[0], h[1])
	}
	tx.ProcessRequestHeaders()
	if len(sc.Body) > 0 {
		_, _, _ = tx.WriteRequestBody(sc.Body)
	}
	_, _ = tx.ProcessRequestBody()
	tx.ProcessLogging()
	return auditRules(tx)
}

// requestHeaders are the headers the application would receive from Envoy
// for sc: the client's, plus what Envoy adds before its filters run.
func requestHeaders(sc Scenario, host string, seq int) [][2]string {
	h := [][2]string{{"host", host}}
	h = append(h, browserHeaders...)
	h = append(h, sc.Headers...)
	if len(sc.Body) > 0 {
		h = append(h, [2]string{"content-type", sc.ContentType},
			[2]string{"content-length", fmt.Sprint(len(sc.Body))})
	}
	return append(h, [2]string{"x-forwarded-proto", "http"},
		[2]string{"x-request-id", requestID(seq)})
}

// requestID is a UUID-shaped id, different per request like Envoy's.
func requestID(seq int) string {
	return fmt.Sprintf("%08x-0000-4000-8000-%012x", seq, seq*7919)
}
