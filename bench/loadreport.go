package bench

import (
	"fmt"
	"runtime"
	"strings"
)

// loadedCPUMet counts the cases whose (b)/(a) CPU ratio under load is
// within the goal's ratio, and finds the worst.
func (rep *Report) loadedCPUMet() (met int, worst Result) {
	for _, r := range rep.Results {
		if r.Loaded.cpuRatio() <= goalCPURatio {
			met++
		}
		if r.Loaded.cpuRatio() > worst.Loaded.cpuRatio() {
			worst = r
		}
	}
	return met, worst
}

// writeLoaded is the section of the loaded measurement: what differs from
// one at a time, whether the CPU ratio holds, and its two tables.
func (rep *Report) writeLoaded(b *strings.Builder) {
	if len(rep.Results) == 0 {
		return
	}
	n := rep.InFlight
	fmt.Fprintf(b, "\n## Under load: %d requests in flight\n\n", n)
	fmt.Fprintf(b, loadedMethodText, n, n, n, runtime.NumCPU(), n)
	rep.writeLoadedFinding(b)
	b.WriteString("### CPU per request under load (ms)\n\n")
	b.WriteString("| scenario | PL | (a) in-process | (b) agent | (b)/(a) | (b)/(a) one at a time | (c) agent | (c) Envoy | (d) Envoy | requests (a/b/c/d) |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rep.Results {
		l := r.Loaded
		fmt.Fprintf(b, "| %s | %d | %s | %s | %.2f× | %.2f× | %s | %s | %s | %d/%d/%d/%d |\n",
			r.Scenario, r.Level, ms(l.InProcess.CPUPerRequest(0)), ms(l.Agent.CPUPerRequest(0)), l.cpuRatio(), r.cpuRatio(),
			ms(l.Envoy.CPUPerRequest(1)), ms(l.Envoy.CPUPerRequest(0)), ms(l.EnvoyAlone.CPUPerRequest(0)),
			l.InProcess.Requests, l.Agent.Requests, l.Envoy.Requests, l.EnvoyAlone.Requests)
	}
	b.WriteString("\n### Latency p50 / p99 under load (ms)\n\n")
	b.WriteString("| scenario | PL | (a) in-process | (b) agent | (c) Envoy + agent | (d) Envoy alone |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|\n")
	for _, r := range rep.Results {
		l := r.Loaded
		fmt.Fprintf(b, "| %s | %d | %s | %s | %s | %s |\n",
			r.Scenario, r.Level, pair(l.InProcess), pair(l.Agent), pair(l.Envoy), pair(l.EnvoyAlone))
	}
}

const loadedMethodText = `The same scenarios, levels and budget, measured in the same rounds as the
tables above (every mode, one at a time and loaded, takes its turn in each round), but with %d
requests in flight instead of one: a closed loop, %d senders each sending the next request as
soon as their last is answered. Why %d: the machine has %d CPUs, and with four requests per CPU
the agent always has the next request waiting when it answers one, as on a node whose CPU is
what limits it (the load curve under "Where the CPU goes" shows one scenario at 1, 2, 4 and 8).
What differs from one at a time: **(a)** inspects with %d goroutines sharing the WAF in its
worker, each request fed exactly as before, and nothing else runs in its process; **(b)** gets
concurrent Check calls over one HTTP/2 connection, as Envoy with its one worker thread sends
them, and the load generator shares the CPUs with the agent (it does not with (a)); **(c)** and
**(d)** get a keep-alive connection per request in flight. CPU per request is still process CPU
over the requests completed. Latency now includes waiting for a CPU, behind the other requests
and, in (b)–(d), behind the client and Envoy: it tells how long a request takes under this load,
not what an inspection costs, and compares with neither the one-at-a-time latencies nor the
latency goal. The (b) floor is not measured under load.

`

// writeLoadedFinding says whether the CPU ratio holds under load in every
// case and how the extra CPU compares with one at a time. It states the
// ratio met only when every case meets it.
func (rep *Report) writeLoadedFinding(b *strings.Builder) {
	met, worst := rep.loadedCPUMet()
	n := len(rep.Results)
	if met == n {
		fmt.Fprintf(b, "Measured under this load, (b) ≤ %.1f× (a) in CPU per request in all %d cases "+
			"(worst %.2f×, %s, PL%d; the goals table's second row).",
			goalCPURatio, n, worst.Loaded.cpuRatio(), worst.Scenario, worst.Level)
	} else {
		fmt.Fprintf(b, "Measured under this load, (b) is within %.1f× (a) in CPU per request in %d of %d cases, not all (worst %.2f×, %s, PL%d).",
			goalCPURatio, met, n, worst.Loaded.cpuRatio(), worst.Scenario, worst.Level)
	}
	small, _ := extras(rep.Results, underLoad)
	single, _ := extras(rep.Results, oneAtATime)
	if len(small) > 0 && len(single) > 0 {
		fmt.Fprintf(b, " Where Coraza needs under %s ms, (b) costs %s more than (a) under load, against %s one at a time.",
			ms(smallInspection), spread(small), spread(single))
	}
	b.WriteString("\n\n")
}
