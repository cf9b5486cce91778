package bench

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshwaf/meshwaf/integration/stack"
)

var (
	full       = flag.Bool("full", false, "measure with the full budget (make bench) instead of a smoke run")
	reportPath = flag.String("report", "", "write the markdown report to this `path`")
	keepDir    = flag.String("rundir", "", "keep logs, profiles and configuration under this `directory`")
	prebuilt   = flag.String("binaries", "", "use the xds and agent binaries in this `directory` instead of building them")
	// For looking into one case: measure only these scenarios, at this
	// level, with this many requests in flight under load.
	only     = flag.String("scenarios", "", "with -full, measure only these comma-separated `names` (e.g. 'benign GET,SQLi GET'), without profiles or options")
	level    = flag.Int("level", 0, "with -full, measure only this CRS paranoia `level`")
	inFlight = flag.Int("inflight", LoadInFlight, "`requests` in flight in the loaded measurement")
)

// TestMain turns the test binary into the in-process worker when the
// harness starts it as one.
func TestMain(m *testing.M) {
	if os.Getenv(WorkerEnv) != "" {
		if err := RunWorker(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "bench worker:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestBench runs the whole harness. By default it sends a handful of
// requests per measurement, so that `make test` proves every mode still
// works (right verdicts, processes found, CPU readable) without timing
// anything; -full measures for real.
func TestBench(t *testing.T) {
	root, err := stack.RepoRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if *keepDir != "" {
		dir = *keepDir
	}
	// The smoke run measures PL1 only: PL2 takes the same code paths, and
	// under -race every in-process inspection is several times slower.
	// Options run in the smoke run too, with the smoke budget, so that
	// every option still compiles and gets the expected verdicts.
	cfg := Config{Budget: SmokeBudget, Levels: []int32{1}, Options: true, RepoRoot: root, RunDir: dir, Logf: t.Logf}
	if *prebuilt != "" {
		cfg.Binaries = &stack.Binaries{ControlPlane: filepath.Join(*prebuilt, "xds"), Agent: filepath.Join(*prebuilt, "agent")}
	}
	cfg.InFlight = *inFlight
	if *full {
		cfg.Budget, cfg.Profile, cfg.Levels = FullBudget, true, []int32{1, 2}
	}
	partial := *full && (*only != "" || *level != 0)
	if partial {
		cfg.Profile, cfg.Options = false, false
		if *only != "" {
			cfg.Scenarios = strings.Split(*only, ",")
		}
		if *level != 0 {
			cfg.Levels = []int32{int32(*level)}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	rep, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	scenarios := len(Scenarios())
	if len(cfg.Scenarios) > 0 {
		scenarios = len(cfg.Scenarios)
	}
	if want := len(cfg.Levels) * scenarios; len(rep.Results) != want {
		t.Fatalf("%d results, want %d (scenario names: %q)", len(rep.Results), want, cfg.Scenarios)
	}
	if want := len(cfg.Levels) * scenarios * len(Options()); cfg.Options && len(rep.Options) != want {
		t.Errorf("%d option results, want %d", len(rep.Options), want)
	}
	for _, r := range rep.Results {
		if r.InProcess.CPUPerRequest(0) <= 0 || r.Agent.P99 <= 0 || r.Envoy.P99 <= 0 || r.EnvoyAlone.P99 <= 0 {
			t.Errorf("%s PL%d: empty measurement: %+v", r.Scenario, r.Level, r)
		}
		l := r.Loaded
		if l.InProcess.CPUPerRequest(0) <= 0 || l.Agent.P99 <= 0 || l.Envoy.P99 <= 0 || l.EnvoyAlone.P99 <= 0 {
			t.Errorf("%s PL%d: empty measurement under load: %+v", r.Scenario, r.Level, l)
		}
	}
	var md bytes.Buffer
	if err := rep.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	last := fmt.Sprintf("| SQLi GET | %d |", cfg.Levels[len(cfg.Levels)-1])
	// A CPU and a latency row one at a time and under load, and one row
	// per performance option.
	if !partial && strings.Count(md.String(), last) != 4+len(Options()) {
		t.Errorf("report lacks the %q rows:\n%s", last, md.String())
	}
	if *reportPath != "" {
		if err := os.MkdirAll(filepath.Dir(*reportPath), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(*reportPath, md.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("report:\n%s", md.String())
}

func TestPercentileIsNearestRank(t *testing.T) {
	var l latencies
	for i := 1; i <= 100; i++ {
		l = append(l, time.Duration(i)*time.Millisecond)
	}
	tests := map[string]struct {
		q    float64
		want time.Duration
	}{
		"median of 1..100 ms": {0.5, 50 * time.Millisecond},
		"p99 of 1..100 ms":    {0.99, 99 * time.Millisecond},
		"p100 is the maximum": {1, 100 * time.Millisecond},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := l.percentile(tc.q); got != tc.want {
				t.Errorf("percentile(%v) = %v, want %v", tc.q, got, tc.want)
			}
		})
	}
}

func TestProcessCPUReadsThisProcess(t *testing.T) {
	proc, err := processCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	self, err := selfCPU()
	if err != nil {
		t.Fatal(err)
	}
	// The scheduler's per-thread run times and getrusage count the same
	// process; getrusage also counts threads that ended, and the two are
	// read a moment apart.
	if diff := self - proc; diff < -5*time.Millisecond || diff > 50*time.Millisecond {
		t.Errorf("/proc/self/task/*/schedstat says %v, getrusage %v", proc, self)
	}
}

func TestCumulativeShareReadsPprofAndPerf(t *testing.T) {
	tests := map[string]struct {
		listing string
		want    float64
	}{
		"pprof -top -cum": {
			"     0.03s  0.61%  0.61%      4.69s 95.13%  github.com/corazawaf/coraza/v3/internal/corazawaf.(*RuleGroup).Eval\n", 95.13},
		"perf --children": {
			"    76.60%     1.33%  [.] github.com/corazawaf/coraza/v3/internal/corazawaf.(*RuleGroup).Eval\n", 76.60},
		"symbol missing": {"    93.21%     0.00%  [.] runtime.goexit.abi0\n", -1},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := cumulativeShare(tc.listing, ruleEvalSymbol); got != tc.want {
				t.Errorf("cumulativeShare = %v, want %v", got, tc.want)
			}
		})
	}
}
