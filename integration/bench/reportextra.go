package bench

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
)

func (rep *Report) writeMemoryGoal(b *strings.Builder) {
	i := slices.IndexFunc(rep.Memory, func(m Memory) bool { return m.Policies == goalMemoryPolicies })
	if i < 0 {
		fmt.Fprintf(b, "| agent RSS with %d distinct policies ≤ %s | — | not measured | — |\n", goalMemoryPolicies, mib(goalMemory))
		return
	}
	m := rep.Memory[i]
	fmt.Fprintf(b, "| agent RSS with %d distinct policies ≤ %s | VmRSS once all are enforced | %s | %s (VmHWM %s) |\n",
		goalMemoryPolicies, mib(goalMemory), metText(m.RSS <= goalMemory), mib(m.RSS), mib(m.HWM))
}

func (rep *Report) writeOverloadGoals(b *strings.Builder) {
	if len(rep.Overloads) == 0 {
		b.WriteString("| overload: throughput ≥ 90 % of peak; every non-2xx a 503, counted and audited; no 403 | — | not measured | — |\n")
		return
	}
	for _, o := range rep.Overloads {
		writeOverloadGoals(b, o)
	}
}

func writeOverloadGoals(b *strings.Builder, o *Overload) {
	through, accounted, no403 := o.goals()
	how := fmt.Sprintf("%d in flight, %s, PL%d, %s", o.InFlight, o.Scenario, o.Level, o.Took.Round(100_000_000))
	fmt.Fprintf(b, "| overload: 2xx per second ≥ %.0f %% of peak | %s | %s | %.1f/s of %.1f/s (%.0f %%) |\n",
		100*goalOverloadShare, how, metText(through), o.Passed(), o.Peak, 100*o.Passed()/max(o.Peak, 1e-9))
	fmt.Fprintf(b, "| overload: every non-2xx is a 503 counted by `verdict=\"overloaded\"` and audited as `\"action\":\"overloaded\"` | %s | %s | %d non-2xx, %d of them 503; metric +%d, audit lines %d; %d without answer |\n",
		how, metText(accounted), o.nonPassed(0), o.nonPassed(http.StatusServiceUnavailable), o.Metric, o.Audited, o.Errors)
	fmt.Fprintf(b, "| overload: no 403 | %s | %s | %d |\n", how, metText(no403), o.Statuses[http.StatusForbidden])
}

func (rep *Report) writeOverload(b *strings.Builder) {
	for _, o := range rep.Overloads {
		writeOverload(b, o)
	}
}

func writeOverload(b *strings.Builder, o *Overload) {
	fmt.Fprintf(b, "## Overload: %d in flight through Envoy + agent\n\n", o.InFlight)
	fmt.Fprintf(b, "The %s at PL%d with %d requests in flight for %s, in a closed loop, right after %d in flight for the "+
		"peak. Peak is the best 2xx rate of that scenario and level through Envoy with %d in flight: %.1f/s measured "+
		"right before, %s in the loaded table above; the goal uses the higher.\n\n",
		o.Scenario, o.Level, o.InFlight, o.Took.Round(100_000_000), o.PeakInFlight, o.PeakInFlight, o.PeakRun, perSecondOrNone(o.PeakTable))
	fmt.Fprintf(b, "| | value |\n|---|---:|\n| 2xx per second | %.1f |\n| answers per second | %.1f |\n", o.Passed(), o.Answered())
	statuses := make([]int, 0, len(o.Statuses))
	for s := range o.Statuses {
		statuses = append(statuses, s)
	}
	slices.Sort(statuses)
	for _, s := range statuses {
		fmt.Fprintf(b, "| status %d | %d |\n", s, o.Statuses[s])
	}
	fmt.Fprintf(b, "| no answer (client timeout or reset) | %d |\n", o.Errors)
	fmt.Fprintf(b, "| `meshwaf_agent_requests_total{verdict=\"overloaded\"}`, growth | %d |\n", o.Metric)
	fmt.Fprintf(b, "| audit lines with `\"action\":\"overloaded\"` | %d |\n\n", o.Audited)
}

func perSecondOrNone(v float64) string {
	if v <= 0 {
		return "none"
	}
	return fmt.Sprintf("%.1f/s", v)
}

func (rep *Report) writeMemory(b *strings.Builder) {
	if len(rep.Memory) == 0 {
		return
	}
	b.WriteString("## Agent memory by number of distinct policies\n\n")
	b.WriteString("Each count in a stack of its own; the policies are the benchmark's PL1 policy for hosts of their own, " +
		"each with a custom rule no other has, so that each compiles to a WAF of its own. Read from `/proc/<agent>/status` " +
		"once the agent lists every policy and has answered one request for each.\n\n")
	b.WriteString("| distinct policies | VmRSS | VmHWM | agent start to all enforced |\n|---:|---:|---:|---:|\n")
	for _, m := range rep.Memory {
		fmt.Fprintf(b, "| %d | %s | %s | %s |\n", m.Policies, mib(m.RSS), mib(m.HWM), m.Ready.Round(100_000_000))
	}
	b.WriteString("\n")
}

func mib(bytes int64) string { return fmt.Sprintf("%.0f MiB", float64(bytes)/(1<<20)) }

// writePeerSetup describes the peer and every setting in which it differs
// from meshwaf.
func writePeerSetup(b *strings.Builder) {
	b.WriteString("## The peer's setup\n\n")
	fmt.Fprintf(b, "nginx with `worker_processes %d` (Envoy runs with one worker thread here, but meshwaf inspects in the "+
		"agent, whose Go runtime uses both CPUs; ModSecurity inspects inside nginx's workers, so two give each system both "+
		"CPUs to inspect on), `modsecurity on` and one server per paranoia level, proxying with keep-alive to the "+
		"backend. Its rules are `seclang.Render` of the same policy the agent enforces (Prevent, CRS v4.25 of the "+
		"coraza-coreruleset module at the paranoia level, anomaly thresholds, early blocking, request body access "+
		"on with the same limit, response body access off), with the CRS files copied from that module. "+
		"Where it differs from meshwaf:\n\n", peerWorkers)
	for _, d := range peerDifferences {
		fmt.Fprintf(b, "- %s;\n", d)
	}
	b.WriteString("\n")
}
