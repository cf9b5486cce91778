package bench

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/meshwaf/meshwaf/api/v1alpha1"
	"github.com/meshwaf/meshwaf/integration/bench/scenario"
)

// The hostile step (issue 14) sends the requests integration's
// TestHostileTrafficAtScale sends through Envoy (scenario.Hostile: 10,000
// arguments, JSON 10,000 deep, 1,000 headers, 1,000 multipart parts, a
// body one byte over the limit) to meshwaf and to nginx + ModSecurity at
// PL1, taking turns as everywhere else, so that the peer is the reference
// for what each costs. The answers differ by system (Envoy refuses more
// than 100 headers itself, the two WAFs' argument limits answer with their
// own statuses), so they are reported, not judged. The trickled body of
// the integration test is left out: it costs time, not CPU.

// hostileBudget measures fewer requests than FullBudget: the slowest of
// these take a few hundred milliseconds each.
var hostileBudget = Budget{Warmup: 3, Target: 3 * time.Second, Min: 20, Max: 1000, Rounds: 5}

// hostileBudgetFor is hostileBudget, or b when that is smaller (the smoke
// run's).
func hostileBudgetFor(b Budget) Budget {
	if b.Min < hostileBudget.Min {
		return b
	}
	return hostileBudget
}

// hostileLevel is the paranoia level the hostile requests are sent at: the
// default policy's.
const hostileLevel = 1

// HostileCost is one hostile request's cost on both systems.
type HostileCost struct {
	Request        string
	Meshwaf, Peer  Measurement
	MeshwafAnswers map[int]int // status → answers, warm-up included
	PeerAnswers    map[int]int
}

// HostileMemory is the most the agent and one nginx worker were resident
// (VmHWM) before and after the hostile step.
type HostileMemory struct {
	AgentBefore, AgentAfter int64
	PeerBefore, PeerAfter   int64
}

// measureHostile sends every hostile request to both systems.
func measureHostile(b Budget, t *targets) ([]HostileCost, HostileMemory, error) {
	var out []HostileCost
	var mem HostileMemory
	var err error
	if mem.AgentBefore, mem.PeerBefore, err = hostileHWM(t); err != nil {
		return nil, mem, err
	}
	host := plHost(hostileLevel)
	for _, sc := range scenario.Hostile(int(v1alpha1.DefaultRequestBodyLimitBytes)) {
		c := HostileCost{Request: sc.Name, MeshwafAnswers: map[int]int{}, PeerAnswers: map[int]int{}}
		modes := []*mode{
			{name: "(c) Envoy + agent", batch: sequential(recordStatus(t.gw, sc, host, c.MeshwafAnswers)),
				meter: cpuMeter{t.pids.envoy, t.pids.agent}},
			{name: peerName, batch: sequential(recordStatus(t.peer, sc, host, c.PeerAnswers)), meter: t.pids.peer},
		}
		if err := measureInterleaved(modes, hostileBudgetFor(b)); err != nil {
			return nil, mem, fmt.Errorf("hostile, %s: %w", sc.Name, err)
		}
		c.Meshwaf, c.Peer = modes[0].result(), modes[1].result()
		out = append(out, c)
	}
	mem.AgentAfter, mem.PeerAfter, err = hostileHWM(t)
	return out, mem, err
}

// recordStatus sends sc and counts its answer's status in answers, whatever
// it is; only a failure to get an answer is an error.
func recordStatus(g *gatewayClient, sc Scenario, host string, answers map[int]int) sendFunc {
	return func(int) (bool, error) {
		status, err := g.status(sc, host)
		if err == nil {
			answers[status]++
		}
		return false, err
	}
}

// hostileHWM is the agent's VmHWM and the largest of nginx's processes'.
func hostileHWM(t *targets) (agent, peer int64, err error) {
	if _, agent, err = processMemory(t.pids.agent); err != nil {
		return 0, 0, err
	}
	for _, pid := range t.pids.peer {
		_, hwm, err := processMemory(pid)
		if err != nil {
			return 0, 0, err
		}
		peer = max(peer, hwm)
	}
	return agent, peer, nil
}

// writeHostile is the report's section on the hostile requests.
func (rep *Report) writeHostile(b *strings.Builder) {
	if len(rep.Hostile) == 0 {
		return
	}
	b.WriteString("## Hostile requests\n\n")
	fmt.Fprintf(b, "The requests of integration's TestHostileTrafficAtScale (integration/bench/scenario/hostile.go), one at a time to "+
		"meshwaf (Envoy + agent) and to nginx + ModSecurity at PL%d, taking turns in the same rounds; CPU as in the "+
		"tables above. The answers are each system's own, and where they differ so does the work: Envoy (like "+
		"Istio's gateways) refuses more than 100 headers with 431 before any filter runs, nginx refuses a request "+
		"line longer than its 8 KiB header buffer with 414 before ModSecurity runs, and the WAFs refuse what they "+
		"cannot or will not parse (JSON nested deeper than 1,024, 1,000 arguments or more) with their own status. "+
		"The trickled body of the integration test is not here: it costs time, not CPU.\n\n", hostileLevel)
	b.WriteString("| request | answers meshwaf | answers nginx + ModSecurity | CPU/req meshwaf | CPU/req nginx + ModSecurity | ratio (rounds) | p50 meshwaf / peer |\n")
	b.WriteString("|---|---|---|---:|---:|---|---|\n")
	for _, c := range rep.Hostile {
		lo, hi := roundSpread(c.Meshwaf, c.Peer)
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %.2f× (%.2f–%.2f) | %s / %s |\n", c.Request,
			answerCounts(c.MeshwafAnswers), answerCounts(c.PeerAnswers),
			ms(c.Meshwaf.TotalCPUPerRequest()), ms(c.Peer.TotalCPUPerRequest()), cpuRatio(c.Meshwaf, c.Peer), lo, hi,
			ms(c.Meshwaf.P50), ms(c.Peer.P50))
	}
	m := rep.HostileMemory
	fmt.Fprintf(b, "\nMost resident (VmHWM) before → after the step: agent %s → %s; the largest nginx process %s → %s.\n\n",
		mib(m.AgentBefore), mib(m.AgentAfter), mib(m.PeerBefore), mib(m.PeerAfter))
}

// answerCounts writes status counts as "403 ×23, 503 ×1".
func answerCounts(answers map[int]int) string {
	var parts []string
	for _, status := range slices.Sorted(maps.Keys(answers)) {
		parts = append(parts, fmt.Sprintf("%d ×%d", status, answers[status]))
	}
	return strings.Join(parts, ", ")
}
