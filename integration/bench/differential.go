package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/meshwaf/meshwaf/agent"
	"github.com/meshwaf/meshwaf/policytest"
)

// The differential (issue 13) sends every request of a corpus (probes.go)
// through meshwaf (Envoy + agent) and through nginx + ModSecurity v3 with
// the same CRS at the same level, one request at a time, and compares
// what each answered. Where they disagree it also asks the agent's engine
// in-process what it makes of the request as sent (policytest), which
// tells a difference of the engine from one of what Envoy hands it.

// DiffConfig selects what a differential run sends and where its parts
// come from.
type DiffConfig struct {
	// Levels are the CRS paranoia levels compared; default 1 and 2.
	Levels []int32
	// Categories filters the corpus by category; empty means all.
	Categories []string
	// PerCategory, when positive, keeps only the first this many probes of
	// each category (the smoke run of make test).
	PerCategory int

	Parts
}

// Answer is what one system answered one request.
type Answer struct {
	Status int    // 0 when there was no answer
	Err    string // why there was none
	// Denied is set for an answer the WAF itself gave whatever its status:
	// ModSecurity's recommended configuration denies a body it cannot
	// parse with a 400, which its audit log tells from nginx's own 400.
	Denied bool
}

// Verdicts an answer is read as.
const (
	Blocked  = "blocked" // 403, or the WAF denied it with another status
	Passed   = "passed"  // it reached the backend (2xx, 3xx) or was not found
	NoAnswer = "no answer"
)

// Verdict reads the answer: blocked, passed, "refused <status>" for any
// other status (the proxy or the WAF refused the request's form: a 400, a
// 413), or no answer.
func (a Answer) Verdict() string {
	switch {
	case a.Status == 0:
		return NoAnswer
	case a.Status == http.StatusForbidden || a.Denied:
		return Blocked
	case a.Status < 400 || a.Status == http.StatusNotFound:
		return Passed
	default:
		return "refused " + strconv.Itoa(a.Status)
	}
}

// DiffResult is one probe at one level.
type DiffResult struct {
	Probe    string
	Category string
	Level    int32
	Meshwaf  Answer
	Peer     Answer
	// PeerRules are the rules ModSecurity's audit record names for the
	// request (it has one for every request a rule matched).
	PeerRules []string
	// InProcess is the agent's engine on the request as sent, for the
	// probes where the two systems disagree ("" elsewhere, and
	// "unparsable" for bytes Go's HTTP parser refuses).
	InProcess      string
	InProcessRules []int
	// Known is the reviewed reason for this difference, if listed.
	Known *knownDifference
	// mark is the probe header's value, which finds ModSecurity's record.
	mark string
}

// Missed says ModSecurity blocked what meshwaf let through: the case
// meshwaf must fix or explain.
func (r DiffResult) Missed() bool {
	return r.Peer.Verdict() == Blocked && r.Meshwaf.Verdict() == Passed
}

// Disagree says the two systems read the request differently.
func (r DiffResult) Disagree() bool { return r.Peer.Verdict() != r.Meshwaf.Verdict() }

// DiffReport is everything a differential run found.
type DiffReport struct {
	Levels  []int32
	Results []DiffResult
	Started time.Time
	Took    time.Duration
	// Stale are the reviewed list's entries no difference of the run
	// matched (the run covered their probes and they agreed).
	Stale []knownDifference
}

// RunDifferential starts meshwaf and the peer, sends every selected probe
// to both at every level and compares the answers.
func RunDifferential(ctx context.Context, cfg DiffConfig) (*DiffReport, error) {
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	if len(cfg.Levels) == 0 {
		cfg.Levels = []int32{1, 2}
	}
	known, err := loadKnownDifferences(filepath.Join(cfg.RepoRoot, "integration", "bench", knownDifferencesFile))
	if err != nil {
		return nil, err
	}
	probes, err := selectProbes(cfg)
	if err != nil {
		return nil, err
	}
	rep := &DiffReport{Levels: cfg.Levels, Started: time.Now()}
	if err := cfg.build(ctx); err != nil {
		return nil, err
	}
	waf, err := startWAFStack(ctx, cfg.Parts, "waf", cfg.Levels)
	if err != nil {
		return nil, err
	}
	defer waf.Stop()
	peerDir := filepath.Join(cfg.RunDir, "peer")
	pr, err := startPeer(ctx, cfg.RepoRoot, peerDir, cfg.Levels, waf.Ports().Backend)
	if err != nil {
		return nil, err
	}
	defer pr.stop()
	engine, err := policytest.Load(filepath.Join(cfg.RunDir, "waf", "manifests"))
	if err != nil {
		return nil, fmt.Errorf("load the policies in-process: %w", err)
	}
	meshwafAddr, peerAddr := hostPort(waf.GatewayURL()), hostPort(pr.url())

	for _, pl := range cfg.Levels {
		cfg.Logf("differential at PL%d: %d requests to each system", pl, len(probes))
		results, err := sendProbes(ctx, probes, pl, meshwafAddr, peerAddr)
		if err != nil {
			return nil, err
		}
		auditLog := filepath.Join(peerDir, fmt.Sprintf("modsec-audit-pl%d.log", pl))
		if err := addPeerRules(results, auditLog); err != nil {
			return nil, err
		}
		for i := range results {
			if r := &results[i]; r.Disagree() {
				raw, err := probes[i].build(plHost(pl), r.mark)
				if err != nil {
					return nil, err
				}
				r.InProcess, r.InProcessRules = inProcessVerdict(engine, raw)
			}
		}
		rep.Results = append(rep.Results, results...)
	}
	if err := errors.Join(pr.alive(), waf.Alive()); err != nil {
		return nil, err
	}
	rep.Stale = known.match(rep.Results)
	rep.Took = time.Since(rep.Started)
	return rep, nil
}

// sendProbes sends every probe at level pl to both systems, one request
// at a time.
func sendProbes(ctx context.Context, probes []corpusProbe, pl int32, meshwafAddr, peerAddr string) ([]DiffResult, error) {
	out := make([]DiffResult, 0, len(probes))
	for i, p := range probes {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		mark := probeMark(pl, i)
		raw, err := p.build(plHost(pl), mark)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p.ID, err)
		}
		out = append(out, DiffResult{Probe: p.ID, Category: p.Category, Level: pl, mark: mark,
			Meshwaf: sendRaw(meshwafAddr, raw), Peer: sendRaw(peerAddr, raw)})
	}
	return out, nil
}

// addPeerRules reads ModSecurity's audit log into the results: the rules
// each request matched, and Denied for a 400 with a record, which is
// ModSecurity's own (its recommended configuration denies a body it cannot
// parse with a 400; nginx's own 400s come before ModSecurity sees the
// request). The log has a record for every request a rule matched
// (SecAuditEngine RelevantOnly), written after the answer has gone, so it
// is read again, for up to two seconds, until every 403 has its record.
func addPeerRules(results []DiffResult, auditLog string) error {
	deadline := time.Now().Add(2 * time.Second)
	for {
		rules, err := peerAuditRules(auditLog)
		if err != nil {
			return err
		}
		complete := true
		for i := range results {
			r := &results[i]
			r.PeerRules = rules[r.mark]
			r.Peer.Denied = r.Peer.Status == http.StatusBadRequest && len(r.PeerRules) > 0
			complete = complete && (r.Peer.Status != http.StatusForbidden || len(r.PeerRules) > 0)
		}
		if complete || time.Now().After(deadline) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// selectProbes is the corpus as cfg filters it, CRS tests first.
func selectProbes(cfg DiffConfig) ([]corpusProbe, error) {
	crs, err := crsProbes()
	if err != nil {
		return nil, fmt.Errorf("CRS tests: %w", err)
	}
	payloads, err := payloadProbes()
	if err != nil {
		return nil, fmt.Errorf("payload lists: %w", err)
	}
	var out []corpusProbe
	taken := map[string]int{}
	for _, p := range append(crs, payloads...) {
		if len(cfg.Categories) > 0 && !slices.Contains(cfg.Categories, p.Category) {
			continue
		}
		if cfg.PerCategory > 0 && taken[p.Category] >= cfg.PerCategory {
			continue
		}
		taken[p.Category]++
		out = append(out, p)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no probe in categories %q", cfg.Categories)
	}
	return out, nil
}

// probeMark is the probe header's value for probe i at level pl.
func probeMark(pl int32, i int) string { return fmt.Sprintf("%d%06d", pl, i) }

func hostPort(base string) string {
	u, err := url.Parse(base)
	if err != nil {
		return base
	}
	return u.Host
}

// sendRaw writes raw to addr on a connection of its own and reads one
// answer. The bytes go as they are (Go's HTTP client would reject or
// rewrite many of the corpus's requests).
func sendRaw(addr string, raw []byte) Answer {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return Answer{Err: err.Error()}
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write(raw); err != nil {
		return Answer{Err: err.Error()}
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return Answer{Err: err.Error()}
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	return Answer{Status: resp.StatusCode}
}

// inProcessVerdict evaluates raw with the agent's engine as meshwaf test
// would.
func inProcessVerdict(engine *policytest.Policies, raw []byte) (string, []int) {
	req, ok := asPolicyTest(raw)
	if !ok {
		return "unparsable", nil
	}
	e, err := engine.Evaluate(req, gatewayName)
	if err != nil {
		return "error: " + err.Error(), nil
	}
	res := policytest.NewResult(e)
	return res.Verdict, ruleIDs(res.Rules)
}

func ruleIDs(rules []agent.AuditRule) []int {
	var out []int
	for _, r := range rules {
		out = append(out, r.ID)
	}
	return out
}
