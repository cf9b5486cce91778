package bench

import (
	"fmt"
	"time"

	"github.com/meshwaf/meshwaf/agentapi"
)

// Option is one of Coraza's performance options, measured in-process (a)
// against the agent's configuration in the same run, the two taking turns.
// Each says whether meshwaf keeps it and why: an option is kept only if the
// CRS regression suite stays at 0 failures through Envoy with it (make
// conformance) and it changes no verdict, audit line or metric.
type Option struct {
	Name string // as the report shows it
	Key  string // batch.Option
	Kept string // the decision and its reason, for the report
	// Env starts the option's in-process worker with these variables
	// (runtime settings), instead of the shared worker.
	Env []string

	policy           func(*agentapi.HostPolicy)
	directives       func(string) string
	skipCleanLogging bool
}

// Options are the performance options the report compares.
func Options() []Option {
	return []Option{
		{
			Name: "regex prefilter (`coraza.rule.rx_prefilter`)", Key: "prefilter",
			// The build tag only turns the default of SecRxPreFilter on
			// (coraza internal/corazawaf/rxprefilter_on.go); the directive
			// gives the same WAF in the same worker binary.
			directives: func(d string) string { return "SecRxPreFilter On\n" + d },
			Kept: "no: with it the CRS suite fails 942220-2 and 932311-7 over ext_authz and ext_proc " +
				"(the prefilter rules out inputs the expressions match, e.g. `2.2250738585072011e-308` for 942220)",
		},
		{
			Name: "CRS early blocking (`crs.earlyBlocking`)", Key: "early-blocking",
			policy: func(p *agentapi.HostPolicy) { p.Crs.EarlyBlocking = true },
			Kept:   "as a policy choice (off by default, as in the CRS): it changes when a request is blocked, not what it costs unless phase 1 already condemns it",
		},
		{
			Name: "Go GC target 200 % (`GOGC=200`)", Key: "gogc200", Env: []string{"GOGC=200"},
			Kept: "not as a default: the saving (the garbage collector is under a tenth of the CPU) costs about a " +
				"third more resident memory (83 → 108 MB for the bench's agent with two CRS policies); " +
				"an operator short of CPU can set GOGC=200 in the agent's environment",
		},
		{
			Name: "no logging phase for clean requests", Key: "skip-logging",
			skipCleanLogging: true,
			Kept: "no: within the noise (for a request phases 1 and 2 neither blocked nor scored, the logging " +
				"phase is a few CRS bookkeeping rules), not worth a special case that custom phase-5 rules would have to escape",
		},
	}
}

// optionNamed finds an option by key; "" is the agent's configuration.
func optionNamed(key string) (Option, error) {
	if key == "" {
		return Option{}, nil
	}
	for _, o := range Options() {
		if o.Key == key {
			return o, nil
		}
	}
	return Option{}, fmt.Errorf("no performance option %q", key)
}

// OptionResult is one option's in-process measurement next to the
// baseline's, for one scenario at one level.
type OptionResult struct {
	Option        string
	Scenario      string
	Level         int32
	Without, With Measurement
}

// gain is the CPU per request the option saves, as a share of the baseline.
func (r OptionResult) gain() float64 {
	return 1 - ratio(r.With.TotalCPUPerRequest(), r.Without.TotalCPUPerRequest())
}

// OptionBudget is what each option measurement gets in a full run: less
// than the main measurements, as only in-process CPU is compared.
var OptionBudget = Budget{Warmup: 20, Target: 2 * time.Second, Min: 100, Max: 2000, Rounds: 4}

// optionWorkers are the in-process workers of a run: the shared one, and
// one per option that needs its own runtime settings.
type optionWorkers struct {
	shared *worker
	own    map[string]*worker
}

func startOptionWorkers(shared *worker) (*optionWorkers, error) {
	ow := &optionWorkers{shared: shared, own: map[string]*worker{}}
	for _, o := range Options() {
		if len(o.Env) == 0 {
			continue
		}
		w, err := startWorker(o.Env...)
		if err != nil {
			ow.stop()
			return nil, fmt.Errorf("worker for %s: %w", o.Key, err)
		}
		ow.own[o.Key] = w
	}
	return ow, nil
}

func (ow *optionWorkers) of(o Option) *worker {
	if w := ow.own[o.Key]; w != nil {
		return w
	}
	return ow.shared
}

func (ow *optionWorkers) stop() {
	for _, w := range ow.own {
		_ = w.stop()
	}
}

// measureOptions compares every option with the agent's configuration for
// one scenario at one level, in-process.
func measureOptions(b Budget, sc Scenario, scIndex int, pl int32, ow *optionWorkers) ([]OptionResult, error) {
	var out []OptionResult
	for _, o := range Options() {
		w := ow.of(o)
		modes := []*mode{
			{name: "(a)", batch: ow.shared.batches(batch{Level: pl, Scenario: scIndex}),
				meter: cpuMeter{ow.shared.pid()}, blocked: sc.Blocked},
			{name: "(a) with " + o.Key, batch: w.batches(batch{Level: pl, Scenario: scIndex, Option: o.Key}),
				meter: cpuMeter{w.pid()}, blocked: sc.Blocked},
		}
		if err := measureInterleaved(modes, b); err != nil {
			return nil, fmt.Errorf("option %s: %w", o.Key, err)
		}
		out = append(out, OptionResult{Option: o.Key, Scenario: sc.Name, Level: pl,
			Without: modes[0].result(), With: modes[1].result()})
	}
	return out, nil
}
