package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshwaf/meshwaf/integration/stack"
)

const (
	// noticeTimeout bounds how long Envoy and the agent take to see that the
	// control plane died. On loopback the kernel resets their connections
	// when the process is killed, so this is fast unless the machine is
	// starved.
	noticeTimeout = 5 * time.Second
	// outageHold is how long the control plane stays down after both
	// noticed, before and again after the policy edit: about 3 s in all,
	// so that each goes through several failed reconnect attempts and
	// backs off, as in a real crash and reschedule.
	outageHold = 1500 * time.Millisecond
	// reconvergeTarget is the time from the restarted control plane being
	// ready to everything agreeing on the edited policy that we aim for;
	// the reconnect backoffs below set the bounds asserted.
	reconvergeTarget = 5 * time.Second
	// ecdsReconnectDeadline bounds Envoy's ECDS reconnect: the gateway's
	// xDS retry (deploy/istio/envoyfilter.yaml) backs off from 0.25 s to a
	// 3 s cap, with full jitter, so Envoy tries again at most 3 s after the
	// control plane is back; the rest is margin for a busy machine.
	ecdsReconnectDeadline = 6 * time.Second
	// minOutageProbes is how many requests of each kind must have been
	// answered while the control plane was away, so that "kept blocking"
	// is backed by traffic rather than by one lucky request.
	minOutageProbes = 5
)

// agentReconnectDeadline bounds the agent's reconnect after an outage of the
// given length. Every attempt of the agent is a real connection attempt
// (agent/client.go resets gRPC's own backoff), paced by the agent's backoff
// (agent/backoff.go: 500 ms doubling, each wait in the upper half of its
// step), so its next attempt comes at most one step after the restart, and
// a step is at most twice the outage so far; 2 s are margin.
func agentReconnectDeadline(outage time.Duration) time.Duration {
	return max(reconvergeTarget, 2*outage+2*time.Second)
}

// restartProbes are sent over and over while the control plane is killed,
// down, restarted and reconverging. The attacks are on shop.example.com,
// which the edit switches from Prevent to Detect.
var restartProbes = []struct {
	name   string
	req    request
	attack bool
}{
	{"SQL injection in the query", sqliGET, true},
	{"XSS in a form POST body", xssForm, true},
	{"benign GET", benign, false},
}

// Issue 5's acceptance test on real processes: the control plane is killed
// with SIGKILL while a real Envoy and agent serve traffic. While it is down
// they keep their last configuration (ECDS filter, host policies), so
// attacks are still blocked and benign requests pass, and neither restarts.
// The policy is edited during the outage; once the control plane is
// restarted with the same flags and ports, the agent applies the edit, Envoy
// receives a new meshwaf.waf config over ECDS, and the control plane reports
// the agent as converged on the new version, each within the bound its
// reconnect backoff allows.
func TestControlPlaneKilledAndRestarted(t *testing.T) {
	dir := demoManifests(t)
	s := startStack(t, stack.Config{Manifests: dir})
	pids := s.PIDs()
	const shop = "shop.example.com"

	for _, p := range restartProbes {
		want := http.StatusOK
		if p.attack {
			want = http.StatusForbidden
		}
		if r := send(t, s, p.req); r.status != want {
			t.Fatalf("%s before the kill: status %d, want %d; body %q", p.name, r.status, want, r.body)
		}
	}
	old := hostPolicy(t, s, shop)
	if old.Mode != "Prevent" {
		t.Fatalf("demo policy for %s has mode %q, want Prevent", shop, old.Mode)
	}
	waitFor(t, reconvergeTarget, "the control plane to see the agent apply the demo policy", func() error {
		return agentConverged(s, "shop/shop", old.PolicyVersion)
	})
	ecdsBefore, filterBefore := readECDS(t, s), ecdsFilterType(t, s)
	streamsBefore, err := readStreamState(s)
	if err != nil {
		t.Fatal(err)
	}
	if streamsBefore.agentConnected != 1 {
		t.Fatalf("agent meshwaf_agent_xds_connected = %v before the kill, want 1", streamsBefore.agentConnected)
	}
	auditBefore := len(readAudit(t, s))

	pr := startProber(s)
	defer pr.halt()

	killed := time.Now()
	if err := s.KillControlPlane(); err != nil {
		t.Fatal(err)
	}
	t.Logf("control plane (pid %d) killed with SIGKILL", pids.ControlPlane)
	waitFor(t, noticeTimeout, "Envoy and the agent to notice the dead control plane", func() error {
		return disconnected(s, streamsBefore)
	})
	t.Logf("Envoy and the agent noticed the outage after %s", time.Since(killed).Round(time.Millisecond))
	holdAlive(t, s, outageHold)

	// An edit nobody can deliver: the verdicts must not change until the
	// control plane is back.
	writeFile(t, dir, "wafpolicy.yaml", policyYAML(shopDetect))
	edited := time.Now()
	holdAlive(t, s, outageHold)

	// Envoy must still hold the ext_authz config it got before the kill,
	// not have fallen back to its default_config (an RBAC deny-all, whose
	// 403s would look like blocked attacks).
	if now, typ := readECDS(t, s), ecdsFilterType(t, s); now.version != ecdsBefore.version || typ != filterBefore {
		t.Errorf("during the outage Envoy holds meshwaf.waf %s version %d; want %s version %d as before the kill",
			typ, now.version, filterBefore, ecdsBefore.version)
	}

	restarting := time.Now()
	if err := s.RestartControlPlane(context.Background()); err != nil {
		t.Fatal(err)
	}
	ready := time.Now()
	outage := ready.Sub(killed)
	t.Logf("control plane down for %s (kill to ready again; the restart itself took %s)",
		outage.Round(time.Millisecond), ready.Sub(restarting).Round(time.Millisecond))

	var newVersion string
	awaitReconvergence(t, ready, []observation{
		{"the attack on " + shop + " is allowed (Detect)", agentReconnectDeadline(outage), func() error {
			if pr.seenSince(restartProbes[0].name, http.StatusOK, restarting) {
				return nil
			}
			return fmt.Errorf("the prober has seen no 200 for %s since the restart", sqliGET)
		}},
		{"the agent enforces the edited policy", agentReconnectDeadline(outage), func() error {
			p := hostPolicy(t, s, shop)
			if p.Mode != "Detect" || p.PolicyVersion == old.PolicyVersion {
				return fmt.Errorf("agent reports mode %q version %q; want Detect and a version other than %q", p.Mode, p.PolicyVersion, old.PolicyVersion)
			}
			newVersion = p.PolicyVersion
			return nil
		}},
		{"the control plane reports the agent converged on the new version", agentReconnectDeadline(outage), func() error {
			if newVersion == "" {
				return fmt.Errorf("the agent has not reported the new version yet")
			}
			return agentConverged(s, "shop/shop", newVersion)
		}},
		{"Envoy received a new meshwaf.waf config over ECDS", ecdsReconnectDeadline, func() error {
			now := readECDS(t, s)
			if now.updateSuccess <= ecdsBefore.updateSuccess || now.configReload <= ecdsBefore.configReload || now.version == ecdsBefore.version {
				return fmt.Errorf("update_success %d, was %d; config_reload %d, was %d; version %d, was %d",
					now.updateSuccess, ecdsBefore.updateSuccess, now.configReload, ecdsBefore.configReload, now.version, ecdsBefore.version)
			}
			return nil
		}},
	})

	// The prober goes on a little, so that a verdict flapping back to the
	// old policy would be seen.
	holdAlive(t, s, 500*time.Millisecond)
	results := pr.halt()
	checkProbes(t, results, killed, edited, restarting)
	checkRestartAudit(t, s, results, auditBefore, old.PolicyVersion, newVersion)

	now := s.PIDs()
	if now.Envoy != pids.Envoy || now.Agent != pids.Agent {
		t.Errorf("Envoy or the agent restarted: PIDs %+v, were %+v", now, pids)
	}
	if now.ControlPlane == 0 || now.ControlPlane == pids.ControlPlane {
		t.Errorf("control plane pid %d after the restart, was %d: want a new process", now.ControlPlane, pids.ControlPlane)
	}
	if err := s.Alive(); err != nil {
		t.Error(err)
	}
}

// observation is one thing that must become true after the restart, within
// deadline of the control plane being ready.
type observation struct {
	what     string
	deadline time.Duration
	check    func() error
}

// awaitReconvergence polls every observation until it holds and logs when
// it first held. They are separate paths (the agent's stream, Envoy's ECDS
// stream, the control plane's ACK bookkeeping) that reconnect on their own
// backoff schedules, so each is timed and bounded on its own. It fails t
// if any misses its deadline.
func awaitReconvergence(t *testing.T, ready time.Time, obs []observation) {
	t.Helper()
	took := make([]time.Duration, len(obs))
	lastErr := make([]error, len(obs))
	for pending := len(obs); pending > 0; time.Sleep(25 * time.Millisecond) {
		for i, o := range obs {
			if took[i] != 0 {
				continue
			}
			if lastErr[i] = o.check(); lastErr[i] == nil {
				took[i] = time.Since(ready)
				pending--
			} else if time.Since(ready) > o.deadline {
				took[i] = -1
				pending--
			}
		}
	}
	for i, o := range obs {
		switch {
		case took[i] < 0:
			t.Errorf("not within %s of the restart: %s: %v", o.deadline, o.what, lastErr[i])
		case took[i] > reconvergeTarget:
			t.Logf("reconverged %s after the restart, over the %s target (reconnect backoff): %s", took[i].Round(time.Millisecond), reconvergeTarget, o.what)
		default:
			t.Logf("reconverged %s after the restart: %s", took[i].Round(time.Millisecond), o.what)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

// checkProbes checks every answer the gateway gave during the test: benign
// requests always pass; attacks are blocked by the agent (its block response
// carries a transaction id) until the restart and, once the edited policy
// arrived, allowed, flipping exactly once and never back.
func checkProbes(t *testing.T, results []probeResult, killed, edited, restarting time.Time) {
	t.Helper()
	for _, p := range restartProbes {
		var outage, afterEdit, blocked, passed int
		flipped := !p.attack
		for _, r := range results {
			if r.name != p.name {
				continue
			}
			at := fmt.Sprintf("%s sent %s after the kill", p.name, r.sent.Sub(killed).Round(time.Millisecond))
			if r.err != nil {
				t.Errorf("%s: %v", at, r.err)
				continue
			}
			if !r.sent.Before(killed) && r.sent.Before(restarting) {
				outage++
				if !r.sent.Before(edited) {
					afterEdit++
				}
			}
			switch {
			case r.status == http.StatusForbidden && !flipped && r.meshwafBlock:
				blocked++
			case r.status == http.StatusOK && (flipped || !r.sent.Before(restarting)):
				flipped = true
				passed++
			default:
				t.Errorf("%s: status %d (meshwaf block response %v); want %s", at, r.status, r.meshwafBlock, map[bool]string{
					true:  "403 from the agent until the edited policy arrives, then 200, flipping once",
					false: "200"}[p.attack])
			}
		}
		t.Logf("%s: %d answered during the outage (%d after the edit); %d blocked, %d passed",
			p.name, outage, afterEdit, blocked, passed)
		if outage < minOutageProbes || afterEdit == 0 {
			t.Errorf("%s: %d requests answered during the outage (%d after the edit), want at least %d and one after the edit",
				p.name, outage, afterEdit, minOutageProbes)
		}
		if p.attack && (blocked < outage || passed == 0) {
			t.Errorf("%s: %d blocked of %d sent during the outage, %d passed after the restart: want all blocked, then some passed",
				p.name, blocked, outage, passed)
		}
	}
}

// checkRestartAudit checks the audit log against the prober's answers: one
// "blocked" line under the old policy version per 403, one "detected" line
// under the new version per attack allowed, and none for benign requests.
func checkRestartAudit(t *testing.T, s *stack.Stack, results []probeResult, before int, oldVersion, newVersion string) {
	t.Helper()
	var wantBlocked, wantDetected int
	for _, r := range results {
		switch {
		case r.err != nil || !r.attack:
		case r.status == http.StatusForbidden:
			wantBlocked++
		case r.status == http.StatusOK:
			wantDetected++
		}
	}
	var got map[string]int
	// Lines are written as the verdict is returned; the last may trail
	// the response by a moment.
	err := poll(2*time.Second, func() error {
		got = map[string]int{}
		for _, line := range readAudit(t, s)[before:] {
			var a auditLine
			if err := json.Unmarshal(line, &a); err != nil {
				return fmt.Errorf("audit line is not JSON: %v: %s", err, line)
			}
			got[a.Action+" "+a.Mode+" "+a.PolicyVersion]++
		}
		want := map[string]int{
			"blocked Prevent " + oldVersion: wantBlocked,
			"detected Detect " + newVersion: wantDetected,
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("audit lines by action, mode and version: %v, want %v", got, want)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	t.Logf("audit: %v", got)
}

// streamState is what Envoy and the agent say about their control plane
// streams: the agent's meshwaf_agent_xds_connected gauge, and how often
// Envoy's meshwaf.waf ECDS stream failed (update_failure).
type streamState struct {
	agentConnected float64
	envoyFailures  uint64
}

func readStreamState(s *stack.Stack) (streamState, error) {
	ctx := context.Background()
	metrics, err := agentMetrics(ctx, s)
	if err != nil {
		return streamState{}, err
	}
	connected, ok := metrics["meshwaf_agent_xds_connected"]
	if !ok {
		return streamState{}, fmt.Errorf("agent /metrics has no meshwaf_agent_xds_connected")
	}
	st, err := s.EnvoyStats(ctx, `^extension_config_discovery\.http_filter\.meshwaf\.waf\.update_failure$`)
	if err != nil {
		return streamState{}, err
	}
	return streamState{agentConnected: connected, envoyFailures: st[stack.ECDSStatPrefix+"update_failure"]}, nil
}

// disconnected reports nil once both Envoy and the agent have seen their
// control plane streams fail since before.
func disconnected(s *stack.Stack, before streamState) error {
	now, err := readStreamState(s)
	if err != nil {
		return err
	}
	if now.agentConnected != 0 || now.envoyFailures <= before.envoyFailures {
		return fmt.Errorf("agent meshwaf_agent_xds_connected %v, want 0; Envoy meshwaf.waf update_failure %d, want more than %d",
			now.agentConnected, now.envoyFailures, before.envoyFailures)
	}
	return nil
}

// agentMetrics returns the agent's unlabelled Prometheus samples.
func agentMetrics(ctx context.Context, s *stack.Stack) (map[string]float64, error) {
	body, err := getBody(ctx, s.AgentURL()+"/metrics")
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, line := range strings.Split(body, "\n") {
		var name string
		var v float64
		if strings.HasPrefix(line, "#") || strings.Contains(line, "{") {
			continue
		}
		if _, err := fmt.Sscan(line, &name, &v); err == nil {
			out[name] = v
		}
	}
	return out, nil
}

// agentConverged reports nil when the control plane's /debug/convergence
// says its one connected agent applied policy at version, and /debug/agents
// lists that agent as in sync.
func agentConverged(s *stack.Stack, policy, version string) error {
	ctx := context.Background()
	body, err := getBody(ctx, s.ControlPlaneURL()+"/debug/convergence")
	if err != nil {
		return err
	}
	var conv struct {
		Policies map[string]struct {
			Version  string `json:"version"`
			Desired  int    `json:"desired"`
			Applied  int    `json:"applied"`
			Rejected []any  `json:"rejected"`
		} `json:"policies"`
	}
	if err := json.Unmarshal([]byte(body), &conv); err != nil {
		return fmt.Errorf("/debug/convergence: %w: %s", err, body)
	}
	c, ok := conv.Policies[policy]
	if !ok || c.Version != version || c.Desired != 1 || c.Applied != 1 || len(c.Rejected) != 0 {
		return fmt.Errorf("/debug/convergence for %s: %+v, want version %s applied by 1 of 1 agent", policy, c, version)
	}
	body, err = getBody(ctx, s.ControlPlaneURL()+"/debug/agents")
	if err != nil {
		return err
	}
	var agents struct {
		Agents []struct {
			Node   string `json:"node"`
			InSync bool   `json:"inSync"`
		} `json:"agents"`
	}
	if err := json.Unmarshal([]byte(body), &agents); err != nil {
		return fmt.Errorf("/debug/agents: %w: %s", err, body)
	}
	if len(agents.Agents) != 1 || agents.Agents[0].Node != stackAgentNode || !agents.Agents[0].InSync {
		return fmt.Errorf("/debug/agents: %+v, want %s alone and in sync", agents.Agents, stackAgentNode)
	}
	return nil
}

// stackAgentNode is the node id integration/stack gives its agent.
const stackAgentNode = "meshwaf-stack-node"

// getBody fetches one of the components' own endpoints and fails on any
// status but 200.
func getBody(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := gatewayClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: status %d: %s", url, resp.StatusCode, b)
	}
	return string(b), nil
}

// holdAlive waits for d while checking that Envoy and the agent stay up, so
// that a crash fails the test when it happens rather than at the end.
func holdAlive(t *testing.T, s *stack.Stack, d time.Duration) {
	t.Helper()
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if err := s.Alive(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(min(100*time.Millisecond, time.Until(end)))
	}
}

// probeResult is one request of the prober: which probe, when it was sent
// and what came back.
type probeResult struct {
	name   string
	attack bool
	sent   time.Time
	status int
	// meshwafBlock is true when the answer carries the agent's transaction
	// id header, which tells the agent's block response from Envoy's own.
	meshwafBlock bool
	err          error
}

// prober sends restartProbes in turn from its own goroutine, so traffic
// flows while the test kills and restarts the control plane, and records
// every answer.
type prober struct {
	stop     chan struct{}
	done     chan struct{}
	haltOnce sync.Once

	mu      sync.Mutex
	results []probeResult
}

func startProber(s *stack.Stack) *prober {
	p := &prober{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		for {
			for _, probe := range restartProbes {
				select {
				case <-p.stop:
					return
				default:
				}
				sent := time.Now()
				resp, err := trySend(s, probe.req)
				p.mu.Lock()
				p.results = append(p.results, probeResult{name: probe.name, attack: probe.attack, sent: sent, status: resp.status,
					meshwafBlock: resp.header.Get("x-meshwaf-transaction-id") != "", err: err})
				p.mu.Unlock()
			}
			// A short pause leaves CPU to the components on a small
			// machine; a round still takes well under the outage.
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return p
}

// seenSince reports whether a request of the named probe sent at or after
// since got status.
func (p *prober) seenSince(name string, status int, since time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range p.results {
		if r.name == name && r.err == nil && r.status == status && !r.sent.Before(since) {
			return true
		}
	}
	return false
}

// halt stops the prober and returns every result; it may be called again.
func (p *prober) halt() []probeResult {
	p.haltOnce.Do(func() { close(p.stop) })
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.results
}
