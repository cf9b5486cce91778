package bench

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"github.com/meshwaf/meshwaf/integration/freeport"
)

// Config selects how much a run measures and where its parts come from.
type Config struct {
	Budget Budget
	// Levels are the CRS paranoia levels to measure; default 1 and 2.
	Levels []int32
	// Scenarios filters Scenarios() by name; empty means all.
	Scenarios []string
	// InFlight is how many requests the loaded measurement keeps in
	// flight; default LoadInFlight.
	InFlight int
	// Overload, if set, measures overload.go's step: each of
	// OverloadInFlight requests in flight for this long, after PeakTime at
	// InFlight.
	Overload, PeakTime time.Duration
	// MemoryPolicies, if set, measures the agent's memory with each of
	// these numbers of distinct policies (memory.go).
	MemoryPolicies []int
	// Shadow measures what a PL2 shadow beside a PL1 policy costs
	// (shadow.go); it needs level 1 among Levels.
	Shadow bool
	// Hostile sends the hostile requests to both systems (hostile.go).
	Hostile bool

	Parts
}

// Result holds the measurements of one scenario at one level: six with
// one request at a time, five under load. The meters are: InProcess the
// in-process worker; AgentFloor and Agent the agent; Envoy the gateway's
// Envoy then the agent; EnvoyAlone the plain Envoy; Peer nginx's master
// and workers.
type Result struct {
	Scenario   string
	Level      int32
	InProcess  Measurement // (a)
	AgentFloor Measurement // (b) for a host without policy
	Agent      Measurement // (b)
	Envoy      Measurement // (c)
	EnvoyAlone Measurement // (d)
	Peer       Measurement // nginx + ModSecurity
	Loaded     Loaded      // the same with Config.InFlight requests in flight
}

// Report is everything a run found.
type Report struct {
	Budget    Budget
	InFlight  int // of the loaded measurement
	Results   []Result
	Overloads []*Overload
	Memory    []Memory
	Shadow    []ShadowCost
	Hostile   []HostileCost
	// HostileMemory is the agent's and nginx's peak memory around the
	// hostile step.
	HostileMemory HostileMemory
	Started       time.Time
	Took          time.Duration
	// LoadBefore and LoadAfter are /proc/loadavg, to tell a quiet machine
	// from a shared, busy one when reading the numbers.
	LoadBefore, LoadAfter string
}

// Run starts the stacks and the peer, measures every scenario at every
// level, then overload and memory as configured, and stops everything
// again.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	if len(cfg.Levels) == 0 {
		cfg.Levels = []int32{1, 2}
	}
	if cfg.InFlight <= 0 {
		cfg.InFlight = LoadInFlight
	}
	rep := &Report{Budget: cfg.Budget, InFlight: cfg.InFlight, Started: time.Now(), LoadBefore: loadAverage()}
	if err := cfg.build(ctx); err != nil {
		return nil, err
	}
	// The overload step runs at its own level, measured or not.
	levels := cfg.Levels
	if cfg.Overload > 0 && !slices.Contains(levels, overloadLevel) {
		levels = append(slices.Clone(levels), overloadLevel)
	}
	st, err := startStacks(ctx, cfg, levels)
	if err != nil {
		return nil, err
	}
	defer st.stop()
	cfg.Logf("starting nginx + ModSecurity")
	pr, err := startPeer(ctx, cfg.RepoRoot, filepath.Join(cfg.RunDir, "peer"), cfg.Levels, st.waf.Ports().Backend)
	if err != nil {
		return nil, err
	}
	defer pr.stop()

	w, err := startWorker()
	if err != nil {
		return nil, fmt.Errorf("in-process worker: %w", err)
	}
	defer w.stop()
	tg, err := newTargets(st, pr, w, cfg.InFlight)
	if err != nil {
		return nil, err
	}
	defer tg.close()

	for _, pl := range cfg.Levels {
		host := plHost(pl)
		waf, err := compileWAF(hostPolicy(pl, host))
		if err != nil {
			return nil, fmt.Errorf("compile PL%d: %w", pl, err)
		}
		local := inProcess{waf: waf, host: host}
		for _, sc := range selectedScenarios(cfg) {
			if err := checkScenario(local, sc); err != nil {
				return nil, fmt.Errorf("PL%d: %w", pl, err)
			}
			cfg.Logf("measuring %s at PL%d", sc.Name, pl)
			res, err := measureAll(cfg.Budget, sc, pl, tg)
			if err != nil {
				return nil, fmt.Errorf("%s at PL%d: %w", sc.Name, pl, err)
			}
			rep.Results = append(rep.Results, res)
		}
	}
	if err := errors.Join(st.waf.Alive(), pr.alive()); err != nil {
		return nil, err
	}
	if cfg.Shadow {
		cfg.Logf("shadow: PL1 with and without a PL2 shadow")
		if rep.Shadow, err = measureShadow(ctx, cfg, st.waf, tg); err != nil {
			return nil, err
		}
	}
	if cfg.Overload > 0 {
		cfg.Logf("overload: %v in flight for %s each", OverloadInFlight, cfg.Overload)
		if rep.Overloads, err = measureOverload(ctx, cfg, st.waf, rep.Results); err != nil {
			return nil, fmt.Errorf("overload: %w", err)
		}
	}
	// After overload, so that the agent overload measures has not yet held
	// the hostile bodies.
	if cfg.Hostile {
		cfg.Logf("hostile requests to both systems")
		if rep.Hostile, rep.HostileMemory, err = measureHostile(cfg.Budget, tg); err != nil {
			return nil, err
		}
	}
	for _, n := range cfg.MemoryPolicies {
		cfg.Logf("agent memory with %d distinct policies", n)
		m, err := measureMemory(ctx, cfg, n)
		if err != nil {
			return nil, fmt.Errorf("memory with %d policies: %w", n, err)
		}
		rep.Memory = append(rep.Memory, m)
	}
	rep.Took = time.Since(rep.Started)
	rep.LoadAfter = loadAverage()
	return rep, nil
}

// selectedScenarios are the scenarios cfg.Scenarios names, or all.
func selectedScenarios(cfg Config) []Scenario {
	var out []Scenario
	for _, sc := range Scenarios() {
		if len(cfg.Scenarios) == 0 || slices.Contains(cfg.Scenarios, sc.Name) {
			out = append(out, sc)
		}
	}
	return out
}

type procs struct {
	agent, envoy, plainEnvoy int
	peer                     cpuMeter // nginx's master and workers
}

// targets are what every scenario is sent to: the in-process worker, the
// agent, the two gateways and the peer, once with a connection for one
// request at a time and once with a connection per request in flight. The agent gets
// one connection either way, as from Envoy (whose single worker thread,
// integration/stack, multiplexes its ext_authz calls over one HTTP/2
// connection).
type targets struct {
	worker                            *worker
	agent                             *authzClient
	gw, plain, peer                   *gatewayClient
	gwLoaded, plainLoaded, peerLoaded *gatewayClient
	pids                              procs
	inFlight                          int
}

func newTargets(st *stacks, pr *peer, w *worker, inFlight int) (*targets, error) {
	peerPIDs, err := pr.pids()
	if err != nil {
		return nil, err
	}
	agent, err := dialAgent(freeport.Addr(st.waf.Ports().Agent), st.waf.Ports().Gateway)
	if err != nil {
		return nil, fmt.Errorf("dial agent: %w", err)
	}
	return &targets{
		worker: w, agent: agent, inFlight: inFlight,
		gw: newGatewayClient(st.waf.GatewayURL(), 1), plain: newGatewayClient(st.plain.GatewayURL(), 1),
		gwLoaded:    newGatewayClient(st.waf.GatewayURL(), inFlight),
		plainLoaded: newGatewayClient(st.plain.GatewayURL(), inFlight),
		peer:        newGatewayClient(pr.url(), 1), peerLoaded: newGatewayClient(pr.url(), inFlight),
		pids: procs{agent: st.waf.PIDs().Agent, envoy: st.waf.PIDs().Envoy, plainEnvoy: st.plain.PIDs().Envoy,
			peer: peerPIDs},
	}, nil
}

func (t *targets) close() {
	for _, g := range []*gatewayClient{t.gw, t.plain, t.peer, t.gwLoaded, t.plainLoaded, t.peerLoaded} {
		g.close()
	}
	_ = t.agent.close()
}

func scenarioIndex(sc Scenario) int {
	return slices.IndexFunc(Scenarios(), func(s Scenario) bool { return s.Name == sc.Name })
}

// measureAll measures one scenario at one level in every mode, one
// request at a time and under load, all modes taking turns in the same
// rounds so that drift is shared between the two as well.
func measureAll(b Budget, sc Scenario, pl int32, t *targets) (Result, error) {
	r := Result{Scenario: sc.Name, Level: pl}
	modes := append(oneAtATimeModes(sc, pl, t), loadedModes(sc, pl, t)...)
	if err := measureInterleaved(modes, b); err != nil {
		return r, err
	}
	into := []*Measurement{&r.InProcess, &r.AgentFloor, &r.Agent, &r.Envoy, &r.EnvoyAlone, &r.Peer,
		&r.Loaded.InProcess, &r.Loaded.Agent, &r.Loaded.Envoy, &r.Loaded.EnvoyAlone, &r.Loaded.Peer}
	for i, m := range modes {
		*into[i] = m.result()
	}
	return r, nil
}

func oneAtATimeModes(sc Scenario, pl int32, t *targets) []*mode {
	host := plHost(pl)
	return []*mode{
		{name: "(a) in-process", batch: inProcBatch(t.worker, pl, sc, 1), meter: cpuMeter{t.worker.pid()}, blocked: sc.Blocked},
		{name: "(b) agent, no policy", batch: sequential(func(i int) (bool, error) { return t.agent.send(sc, noPolicyHost, i) }), meter: cpuMeter{t.pids.agent}},
		{name: "(b) agent", batch: sequential(func(i int) (bool, error) { return t.agent.send(sc, host, i) }), meter: cpuMeter{t.pids.agent}, blocked: sc.Blocked},
		{name: "(c) Envoy + agent", batch: sequential(func(i int) (bool, error) { return t.gw.send(sc, host, i) }), meter: cpuMeter{t.pids.envoy, t.pids.agent}, blocked: sc.Blocked},
		{name: "(d) Envoy alone", batch: sequential(func(i int) (bool, error) { return t.plain.send(sc, host, i) }), meter: cpuMeter{t.pids.plainEnvoy}},
		{name: peerName, batch: sequential(func(i int) (bool, error) { return t.peer.send(sc, host, i) }), meter: t.pids.peer, blocked: sc.Blocked},
	}
}

// peerName names the peer's modes in errors.
const peerName = "nginx + ModSecurity"

// inProcBatch has the worker inspect a batch of sc at level pl with
// inFlight requests in flight.
func inProcBatch(w *worker, pl int32, sc Scenario, inFlight int) batchFunc {
	return w.batches(batch{Level: pl, Scenario: scenarioIndex(sc), InFlight: inFlight})
}

// checkScenario makes sure a benign scenario is benign at this level (a
// finding would add the cost of logging it) and an attack is an attack.
func checkScenario(local inProcess, sc Scenario) error {
	rules := local.findings(sc)
	switch {
	case !sc.Blocked && len(rules) > 0:
		return fmt.Errorf("benign scenario %q matches rules %v", sc.Name, rules)
	case sc.Blocked && len(rules) == 0:
		return fmt.Errorf("attack scenario %q matches no rule", sc.Name)
	}
	return nil
}
