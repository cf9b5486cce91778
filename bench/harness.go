package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/meshwaf/meshwaf/integration/freeport"
	"github.com/meshwaf/meshwaf/integration/stack"
)

// Config selects how much a run measures and where its parts come from.
type Config struct {
	Budget Budget
	// Levels are the CRS paranoia levels to measure; default 1 and 2.
	Levels []int32
	// Scenarios filters Scenarios() by name; empty means all.
	Scenarios []string
	// Profile also records where the CPU goes for one scenario (Go's CPU
	// profiler in (a) and (b), perf's event counts where perf works) and
	// measures the pacing diagnostic (pacing.go) and the load curve
	// (curve.go); it takes about a minute more.
	Profile bool
	// Options also compares Coraza's performance options with the agent's
	// configuration in-process (options.go), after each scenario.
	Options bool
	// InFlight is how many requests the loaded measurement keeps in
	// flight; default LoadInFlight.
	InFlight int

	RepoRoot  string          // meshwaf module root (required)
	RunDir    string          // logs and generated configuration (required)
	Binaries  *stack.Binaries // nil builds cmd/xds and cmd/agent
	EnvoyPath string          // empty: $MESHWAF_ENVOY or scripts/install-envoy.sh
	Logf      func(format string, args ...any)
}

// Result holds the measurements of one scenario at one level: five with
// one request at a time, four under load. The meters are: InProcess the
// in-process worker; AgentFloor and Agent the agent; Envoy the gateway's
// Envoy then the agent; EnvoyAlone the plain Envoy.
type Result struct {
	Scenario   string
	Level      int32
	InProcess  Measurement // (a)
	AgentFloor Measurement // (b) for a host without policy
	Agent      Measurement // (b)
	Envoy      Measurement // (c)
	EnvoyAlone Measurement // (d)
	Loaded     Loaded      // (a)–(d) with Config.InFlight requests in flight
}

// Report is everything a run found.
type Report struct {
	Budget   Budget
	InFlight int // of the loaded measurement
	Results  []Result
	Profiles []Profile
	Pacing   *Pacing
	Pinning  *Pinning
	Curve    *Curve
	Options  []OptionResult
	Started  time.Time
	Took     time.Duration
	// LoadBefore and LoadAfter are /proc/loadavg, to tell a quiet machine
	// from a shared, busy one when reading the numbers.
	LoadBefore, LoadAfter string
}

// Run starts the stacks, measures every scenario at every level, and stops
// the stacks again.
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
	if cfg.Binaries == nil {
		bins, err := stack.Build(ctx, cfg.RepoRoot, filepath.Join(cfg.RunDir, "bin"))
		if err != nil {
			return nil, err
		}
		cfg.Binaries = &bins
	}
	if cfg.Profile {
		// cmd/agent's --pprof defaults to this variable, which the agent
		// inherits: the stack starts it with a fixed command line.
		restore := setenv(agentPprofEnv, "1")
		defer restore()
	}
	st, err := startStacks(ctx, cfg, cfg.Levels)
	if err != nil {
		return nil, err
	}
	defer st.stop()

	w, err := startWorker()
	if err != nil {
		return nil, fmt.Errorf("in-process worker: %w", err)
	}
	defer w.stop()
	tg, err := newTargets(st, w, cfg.InFlight)
	if err != nil {
		return nil, err
	}
	defer tg.close()
	ow, err := startOptionWorkers(w)
	if err != nil {
		return nil, err
	}
	defer ow.stop()

	for _, pl := range cfg.Levels {
		host := plHost(pl)
		waf, err := compileWAF(hostPolicy(pl, host))
		if err != nil {
			return nil, fmt.Errorf("compile PL%d: %w", pl, err)
		}
		local := inProcess{waf: waf, host: host}
		for _, sc := range Scenarios() {
			if len(cfg.Scenarios) > 0 && !slices.Contains(cfg.Scenarios, sc.Name) {
				continue
			}
			if err := checkScenario(local, sc); err != nil {
				return nil, fmt.Errorf("PL%d: %w", pl, err)
			}
			cfg.Logf("measuring %s at PL%d", sc.Name, pl)
			res, err := measureAll(cfg.Budget, sc, pl, tg)
			if err != nil {
				return nil, fmt.Errorf("%s at PL%d: %w", sc.Name, pl, err)
			}
			rep.Results = append(rep.Results, res)
			if cfg.Options {
				cfg.Logf("comparing performance options for %s at PL%d", sc.Name, pl)
				opts, err := measureOptions(optionBudget(cfg.Budget), sc, scenarioIndex(sc), pl, ow)
				if err != nil {
					return nil, fmt.Errorf("%s at PL%d: %w", sc.Name, pl, err)
				}
				rep.Options = append(rep.Options, opts...)
			}
		}
		if cfg.Profile && pl == cfg.Levels[0] {
			t := profileTarget{sc: profileScenario(), scIndex: scenarioIndex(profileScenario()), level: pl, worker: w,
				agent: tg.agent, agentURL: st.waf.AgentURL(), agentPID: tg.pids.agent, inFlight: cfg.InFlight}
			if err := profileAndPace(ctx, cfg, rep, t); err != nil {
				return nil, err
			}
		}
	}
	if err := st.waf.Alive(); err != nil {
		return nil, err
	}
	rep.Took = time.Since(rep.Started)
	rep.LoadAfter = loadAverage()
	return rep, nil
}

type procs struct{ agent, envoy, plainEnvoy int }

// targets are what every scenario is sent to: the in-process worker, the
// agent, and the two gateways, once with a connection for one request at a
// time and once with a connection per request in flight. The agent gets
// one connection either way, as from Envoy (whose single worker thread,
// integration/stack, multiplexes its ext_authz calls over one HTTP/2
// connection).
type targets struct {
	worker                *worker
	agent                 *authzClient
	gw, plain             *gatewayClient
	gwLoaded, plainLoaded *gatewayClient
	pids                  procs
	inFlight              int
}

func newTargets(st *stacks, w *worker, inFlight int) (*targets, error) {
	agent, err := dialAgent(freeport.Addr(st.waf.Ports().Agent), st.waf.Ports().Gateway)
	if err != nil {
		return nil, fmt.Errorf("dial agent: %w", err)
	}
	return &targets{
		worker: w, agent: agent, inFlight: inFlight,
		gw: newGatewayClient(st.waf.GatewayURL(), 1), plain: newGatewayClient(st.plain.GatewayURL(), 1),
		gwLoaded:    newGatewayClient(st.waf.GatewayURL(), inFlight),
		plainLoaded: newGatewayClient(st.plain.GatewayURL(), inFlight),
		pids:        procs{agent: st.waf.PIDs().Agent, envoy: st.waf.PIDs().Envoy, plainEnvoy: st.plain.PIDs().Envoy},
	}, nil
}

func (t *targets) close() {
	for _, g := range []*gatewayClient{t.gw, t.plain, t.gwLoaded, t.plainLoaded} {
		g.close()
	}
	_ = t.agent.close()
}

// agentPprofEnv turns the agent's --pprof on (cmd/agent).
const agentPprofEnv = "MESHWAF_AGENT_PPROF"

// setenv sets an environment variable until restore is called.
func setenv(key, value string) (restore func()) {
	old, had := os.LookupEnv(key)
	os.Setenv(key, value)
	return func() {
		if had {
			os.Setenv(key, old)
		} else {
			os.Unsetenv(key)
		}
	}
}

func scenarioIndex(sc Scenario) int {
	return slices.IndexFunc(Scenarios(), func(s Scenario) bool { return s.Name == sc.Name })
}

// optionBudget is OptionBudget for a full run and the smoke budget
// otherwise, so that `make test` runs the option code too.
func optionBudget(b Budget) Budget {
	if b == SmokeBudget {
		return SmokeBudget
	}
	return OptionBudget
}

// profileAndPace runs the profile step, the pacing diagnostic, the load
// curve and the pinning diagnostic for the profiled scenario, whose measurement is already in rep.
func profileAndPace(ctx context.Context, cfg Config, rep *Report, t profileTarget) (err error) {
	cfg.Logf("profiling %s at PL%d", t.sc.Name, t.level)
	rep.Profiles = append(rep.Profiles, profile(ctx, cfg.RunDir, t)...)
	i := slices.IndexFunc(rep.Results, func(r Result) bool { return r.Scenario == t.sc.Name && r.Level == t.level })
	if i < 0 {
		return nil
	}
	gap := max(rep.Results[i].Agent.P50-rep.Results[i].InProcess.P50, 0)
	budget := PacingBudget
	if cfg.Budget == SmokeBudget {
		budget = SmokeBudget
	}
	if rep.Pacing, err = measurePacing(budget, t, gap); err != nil {
		return err
	}
	if rep.Curve, err = measureCurve(budget, t); err != nil {
		return err
	}
	rep.Pinning, err = measurePinning(budget, t)
	return err
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
	into := []*Measurement{&r.InProcess, &r.AgentFloor, &r.Agent, &r.Envoy, &r.EnvoyAlone,
		&r.Loaded.InProcess, &r.Loaded.Agent, &r.Loaded.Envoy, &r.Loaded.EnvoyAlone}
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
	}
}

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
