package integration

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshwaf/meshwaf/integration/stack"
)

var (
	soakFor    = flag.Duration("soak", 2*time.Minute, "how long TestSoak runs (make soak: 30m)")
	soakReport = flag.String("soak-report", "", "write TestSoak's report (markdown) to this `path`")
	// make soak sends 400 per second, about half of what Envoy + agent
	// answer for these requests with 8 in flight on 2 cores
	// (docs/reports/bench.md); make test, under the race detector and
	// beside other packages, a twentieth of that.
	soakRate = flag.Int("soak-rate", 20, "requests per second TestSoak sends")
)

// TestSoak keeps mixed traffic flowing (benign and attacks, to a Prevent
// and a Detect host) while the policy is edited every 10 s, the control
// plane is killed and restarted once and the agent is restarted once
// (SIGTERM), and checks that nothing is lost: every verdict right except
// while the agent is away, an audit line for every block and every
// detection, and the agent's and control plane's memory and goroutines
// flat. `make test` runs two minutes of it, `make soak` thirty and writes
// docs/reports/soak.md.
func TestSoak(t *testing.T) {
	dir := demoManifests(t)
	shop := shopPrevent
	policies := func(edit bool) string {
		p := shop
		if edit { // a real change every agent must apply, not one of the verdicts
			p.extraSpec = "  exclusions:\n  - ruleIds: [\"920350\"]\n"
		}
		return policyYAML(p, apiDetect)
	}
	writeFile(t, dir, "wafpolicy.yaml", policies(false))
	s := startStack(t, stack.Config{Manifests: dir})
	apiAttack, apiBenign := onHost(sqliGET, "api.example.com"), onHost(benign, "api.example.com")
	waitStatus(t, s, sqliGET, http.StatusForbidden, hotReloadDeadline)
	right := map[request]int{benign: http.StatusOK, sqliGET: http.StatusForbidden, apiBenign: http.StatusOK, apiAttack: http.StatusOK}

	start := time.Now()
	answers := pacedLoad(s, []request{benign, sqliGET, apiBenign, apiAttack}, *soakRate, *soakFor)
	var (
		samples                []soakSample
		agentAway              [2]time.Time // the agent's restart: SIGTERM, ready again
		edits                  int
		cpRestartedAt          time.Duration
		ctx, cancel            = context.WithTimeout(context.Background(), *soakFor+5*time.Minute)
		editEvery, sampleEvery = 10 * time.Second, 5 * time.Second
	)
	defer cancel()
	nextEdit, nextSample := start.Add(editEvery), start
	cpAt, agentAt := start.Add(*soakFor/3), start.Add(2**soakFor/3)
	for time.Since(start) < *soakFor {
		now := time.Now()
		switch {
		case !cpAt.IsZero() && now.After(cpAt):
			cpAt, cpRestartedAt = time.Time{}, now.Sub(start)
			if err := s.KillControlPlane(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Second)
			if err := s.RestartControlPlane(ctx); err != nil {
				t.Fatal(err)
			}
		case !agentAt.IsZero() && now.After(agentAt):
			agentAt = time.Time{}
			agentAway[0] = time.Now()
			if err := s.TerminateAgent(10 * time.Second); err != nil {
				t.Fatal(err)
			}
			if err := s.RestartAgent(ctx); err != nil {
				t.Fatal(err)
			}
			agentAway[1] = time.Now()
		case now.After(nextEdit):
			edits++
			writeFile(t, dir, "wafpolicy.yaml", policies(edits%2 == 1))
			nextEdit = nextEdit.Add(editEvery)
		case now.After(nextSample):
			samples = append(samples, sample(ctx, s, now.Sub(start)))
			nextSample = nextSample.Add(sampleEvery)
		default:
			time.Sleep(50 * time.Millisecond)
		}
	}
	got := answers()
	samples = append(samples, sample(ctx, s, time.Since(start)))

	// The agent is away from SIGTERM until it is ready again, and Envoy may
	// still finish a call to it for Envoy's timeout after.
	away := func(a answer) bool {
		return a.done.After(agentAway[0]) && a.sent.Before(agentAway[1].Add(time.Second))
	}
	var wrong, inOutage, blocked, detected int
	for _, a := range got {
		switch {
		case away(a):
			inOutage++
			if a.status != right[a.req] && a.status != http.StatusServiceUnavailable {
				t.Errorf("%s while the agent restarted: status %d, want %d or the failure mode's 503", a.req, a.status, right[a.req])
			}
		case a.status != right[a.req]:
			wrong++
			if wrong <= 10 {
				t.Errorf("%s sent %s into the soak: status %d (body %q, error %v), want %d",
					a.req, a.sent.Sub(start).Round(time.Millisecond), a.status, a.body, a.err, right[a.req])
			}
		}
		if a.req == sqliGET && a.status == http.StatusForbidden {
			blocked++
		}
		if a.req == apiAttack && a.status == http.StatusOK {
			detected++
		}
	}
	if wrong > 0 {
		t.Errorf("%d of %d verdicts wrong outside the agent's restart", wrong, len(got))
	}
	// Nothing lost: an audit line for every block and every detection. A
	// call the stopping agent had decided and audited may still have
	// reached Envoy too late (its answer then was the failure mode's), so
	// the lines may exceed the answers by the calls of the restart.
	actions := map[string]int{}
	for _, action := range auditActions(t, readAudit(t, s)) {
		actions[action]++
	}
	for action, answered := range map[string]int{"blocked": blocked, "detected": detected} {
		if n := actions[action]; n < answered || n > answered+inOutage {
			t.Errorf("%d audit lines %q for %d such answers (%d answered during the agent's restart)", n, action, answered, inOutage)
		}
	}
	r := soakResult{Took: time.Since(start), Requests: len(got), InOutage: inOutage, Wrong: wrong, Edits: edits,
		ControlPlaneRestart: cpRestartedAt, AgentAway: agentAway[1].Sub(agentAway[0]), AgentRestart: agentAway[0].Sub(start),
		Blocked: blocked, Detected: detected, Audit: actions, Samples: samples}
	r.check(t)
	md := r.markdown()
	t.Log("\n" + md)
	if *soakReport != "" {
		if err := os.WriteFile(*soakReport, []byte(md), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// pacedLoad sends the mix at rate requests per second, spread over
// several senders so that a slow answer does not hold the pace, for d; the
// returned function waits for the last answers and returns all of them.
func pacedLoad(s *stack.Stack, mix []request, rate int, d time.Duration) func() []answer {
	var (
		mu  sync.Mutex
		out []answer
		wg  sync.WaitGroup
	)
	jobs := make(chan request, rate)
	for range 16 {
		wg.Go(func() {
			for r := range jobs {
				a := answer{req: r, sent: time.Now()}
				resp, err := trySend(s, r)
				// Bodies only for the error messages: a long soak keeps
				// hundreds of thousands of answers.
				a.done, a.status, a.body, a.err = time.Now(), resp.status, resp.body[:min(len(resp.body), 120)], err
				mu.Lock()
				out = append(out, a)
				mu.Unlock()
			}
		})
	}
	go func() {
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		end := time.Now().Add(d)
		for i := 0; time.Now().Before(end); i++ {
			<-tick.C
			select {
			case jobs <- mix[i%len(mix)]:
			default: // every sender busy: the request is not sent, not queued
			}
		}
		close(jobs)
	}()
	return func() []answer {
		wg.Wait()
		return out
	}
}

// soakSample is the agent's and the control plane's memory and goroutines
// at one moment; a process that is down gives zeros.
type soakSample struct {
	At                            time.Duration
	AgentRSS, ControlPlaneRSS     float64 // MiB
	AgentGoroutines, CPGoroutines float64
}

func sample(ctx context.Context, s *stack.Stack, at time.Duration) soakSample {
	x := soakSample{At: at}
	x.AgentRSS, x.AgentGoroutines = processMetrics(ctx, s.AgentURL())
	x.ControlPlaneRSS, x.CPGoroutines = processMetrics(ctx, s.ControlPlaneURL())
	return x
}

// processMetrics reads process_resident_memory_bytes (as MiB) and
// go_goroutines from a component's /metrics; zeros when it does not answer.
func processMetrics(ctx context.Context, base string) (rssMiB, goroutines float64) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, 0
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			continue
		}
		switch name {
		case "process_resident_memory_bytes":
			rssMiB = v / (1 << 20)
		case "go_goroutines":
			goroutines = v
		}
	}
	return rssMiB, goroutines
}

// soakResult is what a soak found, for its checks and its report.
type soakResult struct {
	Took                              time.Duration
	Requests, InOutage, Wrong, Edits  int
	ControlPlaneRestart, AgentRestart time.Duration
	AgentAway                         time.Duration
	Blocked, Detected                 int
	Audit                             map[string]int
	Samples                           []soakSample
}

// slope fits value(t) = a + b·t by least squares over the samples after
// from (skipping zeros: the process was down) and returns b per minute.
func slope(samples []soakSample, from, to time.Duration, value func(soakSample) float64) float64 {
	var n, sx, sy, sxx, sxy float64
	for _, x := range samples {
		v := value(x)
		if x.At < from || x.At > to || v == 0 {
			continue
		}
		m := x.At.Minutes()
		n, sx, sy, sxx, sxy = n+1, sx+m, sy+v, sxx+m*m, sxy+m*v
	}
	if n < 2 || n*sxx == sx*sx {
		return 0
	}
	return (n*sxy - sx*sy) / (n*sxx - sx*sx)
}

// lifetimes are the stretches over which a process's numbers are
// comparable: the agent's first run and its run after the restart, the
// control plane's likewise, each after a first fifth of warm-up.
func (r soakResult) lifetimes() map[string][2]time.Duration {
	warm := r.Took / 5
	return map[string][2]time.Duration{
		"agent":         {warm, r.AgentRestart},
		"control plane": {r.ControlPlaneRestart + warm/2, r.Took},
	}
}

// check fails on goroutines that grow: more than 20 over a lifetime.
func (r soakResult) check(t *testing.T) {
	t.Helper()
	goroutines := map[string]func(soakSample) float64{
		"agent":         func(x soakSample) float64 { return x.AgentGoroutines },
		"control plane": func(x soakSample) float64 { return x.CPGoroutines },
	}
	for who, span := range r.lifetimes() {
		first, last := 0.0, 0.0
		for _, x := range r.Samples {
			if v := goroutines[who](x); v > 0 && x.At >= span[0] && x.At <= span[1] {
				if first == 0 {
					first = v
				}
				last = v
			}
		}
		if first == 0 {
			t.Errorf("%s: no samples between %s and %s", who, span[0], span[1])
		} else if last > first+20 {
			t.Errorf("%s goroutines grew from %.0f to %.0f", who, first, last)
		}
	}
}

func (r soakResult) markdown() string {
	var b strings.Builder
	b.WriteString("# Soak: mixed traffic, policy edits and restarts\n\n")
	b.WriteString("Generated by `make soak` (`go test ./integration -run TestSoak -args -soak=30m -soak-report=…`); do not edit.\n")
	fmt.Fprintf(&b, "Run %s for %s at %d requests per second (benign and SQLi GETs to a Prevent host and a Detect host through Envoy + agent); "+
		"a policy edit every 10 s (%d), the control plane killed and restarted %s in, the agent restarted (SIGTERM) %s in, away %s.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), r.Took.Round(time.Second), *soakRate, r.Edits,
		r.ControlPlaneRestart.Round(time.Second), r.AgentRestart.Round(time.Second), r.AgentAway.Round(time.Millisecond))
	b.WriteString("| | value |\n|---|---:|\n")
	fmt.Fprintf(&b, "| requests answered | %d |\n| wrong verdicts outside the agent's restart | %d |\n| answered while the agent restarted | %d |\n",
		r.Requests, r.Wrong, r.InOutage)
	fmt.Fprintf(&b, "| blocked answers / audit lines `blocked` | %d / %d |\n| detected answers / audit lines `detected` | %d / %d |\n\n",
		r.Blocked, r.Audit["blocked"], r.Detected, r.Audit["detected"])
	b.WriteString("| process | lifetime measured | RSS slope (MiB/min) | goroutines slope (/min) |\n|---|---|---:|---:|\n")
	rss := map[string]func(soakSample) float64{
		"agent":         func(x soakSample) float64 { return x.AgentRSS },
		"control plane": func(x soakSample) float64 { return x.ControlPlaneRSS },
	}
	gor := map[string]func(soakSample) float64{
		"agent":         func(x soakSample) float64 { return x.AgentGoroutines },
		"control plane": func(x soakSample) float64 { return x.CPGoroutines },
	}
	for _, who := range []string{"agent", "control plane"} {
		span := r.lifetimes()[who]
		fmt.Fprintf(&b, "| %s | %s – %s | %+.2f | %+.2f |\n", who, span[0].Round(time.Second), span[1].Round(time.Second),
			slope(r.Samples, span[0], span[1], rss[who]), slope(r.Samples, span[0], span[1], gor[who]))
	}
	b.WriteString("\n| at | agent RSS (MiB) | agent goroutines | control plane RSS (MiB) | control plane goroutines |\n|---:|---:|---:|---:|---:|\n")
	for _, x := range r.Samples {
		fmt.Fprintf(&b, "| %s | %.0f | %.0f | %.0f | %.0f |\n", x.At.Round(time.Second), x.AgentRSS, x.AgentGoroutines, x.ControlPlaneRSS, x.CPGoroutines)
	}
	return b.String()
}
