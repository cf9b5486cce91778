package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Profile is a text listing of where CPU time went, and the share of it
// spent evaluating Coraza rules (-1 when the listing lacks it).
type Profile struct {
	Title       string
	Text        string
	CorazaShare float64
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

// profile records (a) with pprof in this process and (b) with perf
// attached to the agent, while sending sc in a loop. A tool that is
// missing yields a profile saying so rather than an error: the numbers of
// the run do not depend on it.
func profile(ctx context.Context, cfg Config, sc Scenario, local inProcess, agent *authzClient, agentPID int) []Profile {
	var out []Profile
	title := fmt.Sprintf("(a) in-process Coraza, %s, PL1: go tool pprof -top -cum (cumulative share of CPU)", sc.Name)
	text, err := pprofInProcess(ctx, cfg.RunDir, func(i int) { _, _ = local.send(sc, i) })
	out = append(out, Profile{Title: title, Text: orError(text, err), CorazaShare: cumulativeShare(text, ruleEvalSymbol)})

	title = fmt.Sprintf("(b) agent process, %s, PL1: perf record -g; children (cumulative) and self share by symbol", sc.Name)
	text, err = perfAgent(ctx, cfg.RunDir, agentPID, func(i int) { _, _ = agent.send(sc, plHost(1), i) })
	return append(out, Profile{Title: title, Text: orError(text, err), CorazaShare: cumulativeShare(text, ruleEvalSymbol)})
}

func orError(text string, err error) string {
	if err != nil {
		return "not recorded: " + err.Error()
	}
	return text
}

// loopFor calls send repeatedly until stop is closed.
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

func pprofInProcess(ctx context.Context, dir string, send func(int)) (string, error) {
	path := filepath.Join(dir, "inprocess.pprof")
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if err := pprof.StartCPUProfile(f); err != nil {
		return "", err
	}
	stop := loopFor(send)
	time.Sleep(profileDuration)
	stop()
	pprof.StopCPUProfile()
	return run(ctx, "go", "tool", "pprof", "-top", "-cum", "-nodecount=25", path)
}

func perfAgent(ctx context.Context, dir string, pid int, send func(int)) (string, error) {
	if _, err := exec.LookPath("perf"); err != nil {
		return "", err
	}
	data := filepath.Join(dir, "agent.perf.data")
	stop := loopFor(send)
	_, err := run(ctx, "perf", "record", "-F", "997", "-g", "-o", data, "-p", strconv.Itoa(pid),
		"--", "sleep", strconv.Itoa(int(profileDuration.Seconds())))
	stop()
	if err != nil {
		return "", err
	}
	// Cumulative ("children") shares show the call tree's big branches:
	// the gRPC server, the agent's handler, Coraza, the garbage collector.
	text, err := run(ctx, "perf", "report", "-i", data, "--stdio", "--children", "-g", "none",
		"--sort", "symbol", "--percent-limit", "2")
	if err != nil {
		return "", err
	}
	var keep []string
	for _, line := range strings.Split(text, "\n") {
		if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "#") {
			keep = append(keep, strings.TrimRight(line, " -"))
		}
		if len(keep) == 30 {
			break
		}
	}
	return strings.Join(keep, "\n"), nil
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
