package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Profile is where one process's CPU went while it served the profiled
// scenario: a listing, the share spent evaluating Coraza rules (-1 when the
// listing lacks it), the CPU per request by category, and the kernel's
// event counts per request (nil without perf), one at a time and under
// load.
type Profile struct {
	Title       string
	Text        string
	CorazaShare float64
	Requests    int
	Breakdown   breakdown
	Counters    counters
	// LoadedCounters are Counters with requests in flight (loadcounters.go).
	LoadedCounters counters
}

// ruleEvalSymbol is Coraza's per-phase rule loop: everything under it is
// rule evaluation, the work both modes must do.
const ruleEvalSymbol = "corazawaf.(*RuleGroup).Eval"

// cumulativeShare finds the cumulative percentage of symbol in a pprof
// "-top -cum" or perf "--children" listing: the first percentage on the
// line for pprof is flat%, so the last one before the name is taken.
func cumulativeShare(text, symbol string) float64 {
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasSuffix(strings.TrimSpace(line), symbol) {
			continue
		}
		var pcts []float64
		for _, f := range strings.Fields(line) {
			if v, err := strconv.ParseFloat(strings.TrimSuffix(f, "%"), 64); err == nil && strings.HasSuffix(f, "%") {
				pcts = append(pcts, v)
			}
		}
		switch {
		case len(pcts) >= 3: // pprof: flat% sum% cum%
			return pcts[2]
		case len(pcts) >= 1: // perf: children self
			return pcts[0]
		}
	}
	return -1
}

const profileDuration = 5 * time.Second

// profileScenario is the one profiled: the benign GET, the cheapest
// inspection, where what the agent adds to Coraza weighs most.
func profileScenario() Scenario { return Scenarios()[0] }

// profileTarget is what the profile step needs of a run.
type profileTarget struct {
	sc       Scenario
	scIndex  int
	level    int32
	worker   *worker
	agent    *authzClient
	agentURL string // the agent's HTTP address, serving /debug/pprof
	agentPID int
	inFlight int // for the event counts under load
}

// inProcess is (a) for the profiled scenario, inspecting as shape says
// (Level and Scenario are filled in).
func (t profileTarget) inProcess(shape batch) batchFunc {
	shape.Level, shape.Scenario = t.level, t.scIndex
	return t.worker.batches(shape)
}

// toAgent is (b) for the profiled scenario with n requests in flight.
func (t profileTarget) toAgent(n int) batchFunc {
	host := plHost(t.level)
	return closedLoop(n, func(i int) (bool, error) { return t.agent.send(t.sc, host, i) })
}

// profile records where (a)'s and (b)'s CPU goes while each serves the
// profiled scenario for a few seconds: Go's CPU profiler in both processes
// (the worker profiles itself, the agent serves /debug/pprof), and, where
// perf works, the kernel's counts of system calls and context switches.
// A tool that fails yields a profile saying so rather than an error: the
// numbers of the run do not depend on it.
func profile(ctx context.Context, dir string, t profileTarget) []Profile {
	a := Profile{Title: fmt.Sprintf("(a) in-process Coraza, %s, PL%d", t.sc.Name, t.level)}
	a.record(ctx, t.worker.pid(), filepath.Join(dir, "inprocess.pprof"), func(path string) (int, error) {
		return profileWorker(t, path)
	})
	b := Profile{Title: fmt.Sprintf("(b) agent process, %s, PL%d", t.sc.Name, t.level)}
	b.record(ctx, t.agentPID, filepath.Join(dir, "agent.pprof"), func(path string) (int, error) {
		return profileAgent(ctx, t, path)
	})
	a.LoadedCounters, b.LoadedCounters = countLoadedEvents(t)
	return []Profile{a, b}
}

// record runs serve, which writes a CPU profile to path and returns how
// many requests it covers, under perf stat, and reads the profile.
func (p *Profile) record(ctx context.Context, pid int, path string, serve func(path string) (int, error)) {
	stopCounting := countEvents(pid)
	n, err := serve(path)
	p.Counters = stopCounting(n)
	if err != nil {
		p.Text = "not recorded: " + err.Error()
		return
	}
	p.Requests = n
	// Every node, however small: pprof drops nodes under 0.5 % by default,
	// and the agent's small ones (gRPC, the scheduler) add up.
	all, err := run(ctx, "go", "tool", "pprof", "-top", "-nodecount=1000000", "-nodefraction=0", path)
	if err != nil {
		p.Text = "not recorded: " + err.Error()
		return
	}
	p.Breakdown = parseBreakdown(all, n)
	top, err := run(ctx, "go", "tool", "pprof", "-top", "-cum", "-nodecount=25", path)
	p.Text = orError(top, err)
	p.CorazaShare = cumulativeShare(top, ruleEvalSymbol)
}

// profileWorker has the worker profile itself over about profileDuration
// of requests.
func profileWorker(t profileTarget, path string) (int, error) {
	probe, err := t.worker.run(batch{Level: t.level, Scenario: t.scIndex, Count: 20})
	if err != nil {
		return 0, err
	}
	var spent time.Duration
	for _, l := range probe.Latencies {
		spent += l
	}
	n := max(100, int(profileDuration*time.Duration(len(probe.Latencies))/max(spent, time.Microsecond)))
	_, err = t.worker.run(batch{Level: t.level, Scenario: t.scIndex, Count: n, Seq: 1 << 20, Profile: path})
	return n, err
}

// profileAgent fetches the agent's CPU profile while sending requests,
// counting those sent while it was recorded.
func profileAgent(ctx context.Context, t profileTarget, path string) (int, error) {
	var sent atomic.Int64
	stop := loopFor(func(i int) {
		if _, err := t.agent.send(t.sc, plHost(t.level), i); err == nil {
			sent.Add(1)
		}
	})
	defer stop()
	url := fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", t.agentURL, int(profileDuration.Seconds()))
	before := sent.Load()
	err := fetchTo(ctx, url, path)
	return int(sent.Load() - before), err
}

func fetchTo(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d", url, resp.StatusCode)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func orError(text string, err error) string {
	if err != nil {
		return "not recorded: " + err.Error()
	}
	return text
}

// loopFor calls send repeatedly until stop is called.
func loopFor(send func(int)) (stop func()) {
	var done atomic.Bool
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for i := 0; !done.Load(); i++ {
			send(i)
		}
	}()
	return func() { done.Store(true); <-finished }
}

func run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s: %w: %s", name, err, strings.TrimSpace(errOut.String()))
	}
	return out.String(), nil
}

// startCPUProfile writes this process's CPU profile to path until stop.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
