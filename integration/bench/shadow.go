package bench

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/meshwaf/meshwaf/integration/stack"
)

// The shadow step (issue 13) prices a shadow configuration: each scenario
// through Envoy + agent, one request at a time, for the PL1 host and for a
// host whose policy is the same PL1 with a PL2 shadow beside it, the two
// taking turns in the same rounds. The agent evaluates a shadow after it
// has answered, so the shadow never delays its own request, only, through
// the CPU it takes, the requests that follow; with every shadow slot busy
// it skips the request (agent/shadow.go), which the step counts from the
// agent's metrics.

// shadowHost's policy enforces PL1 and shadows PL2.
const shadowHost = "shadow.bench.local"

func shadowPolicyManifest() string {
	return fmt.Sprintf(`apiVersion: waf.meshwaf.io/v1alpha1
kind: WAFPolicy
metadata: {name: shadow, namespace: istio-ingress}
spec:
  targetRefs:
  - {group: networking.istio.io, kind: Gateway, name: public}
  hosts: [%s]
  mode: Prevent
  crs: {paranoiaLevel: 1}
  shadow:
    crs: {paranoiaLevel: 2}
`, shadowHost)
}

// ShadowCost is one scenario's cost with and without the shadow.
type ShadowCost struct {
	Scenario string
	// Enforced is the PL1 policy alone, Shadowed the same with the PL2
	// shadow; both Envoy's and the agent's CPU.
	Enforced, Shadowed Measurement
	// Evaluated and Skipped count the shadow's evaluations of the
	// Shadowed requests (warm-up included) from the agent's metric.
	Evaluated, Skipped int
}

// measureShadow measures every selected scenario with and without the
// shadow.
func measureShadow(ctx context.Context, cfg Config, waf *stack.Stack, t *targets) ([]ShadowCost, error) {
	var out []ShadowCost
	for _, sc := range selectedScenarios(cfg) {
		before, err := shadowCounts(ctx, waf.AgentURL())
		if err != nil {
			return nil, err
		}
		modes := []*mode{
			{name: "(c) Envoy + agent, PL1", batch: sequential(func(i int) (bool, error) { return t.gw.send(sc, plHost(1), i) }),
				meter: cpuMeter{t.pids.envoy, t.pids.agent}, blocked: sc.Blocked},
			// The verdict must be the enforced policy's: a shadow never
			// changes it.
			{name: "(c) Envoy + agent, PL1 with a PL2 shadow", batch: sequential(func(i int) (bool, error) { return t.gw.send(sc, shadowHost, i) }),
				meter: cpuMeter{t.pids.envoy, t.pids.agent}, blocked: sc.Blocked},
		}
		if err := measureInterleaved(modes, cfg.Budget); err != nil {
			return nil, fmt.Errorf("shadow, %s: %w", sc.Name, err)
		}
		c := ShadowCost{Scenario: sc.Name, Enforced: modes[0].result(), Shadowed: modes[1].result()}
		sent := modes[1].seq
		// The last shadow evaluations finish after their answers.
		deadline := time.Now().Add(5 * time.Second)
		for {
			after, err := shadowCounts(ctx, waf.AgentURL())
			if err != nil {
				return nil, err
			}
			c.Evaluated, c.Skipped = after.evaluated-before.evaluated, after.skipped-before.skipped
			if c.Evaluated+c.Skipped >= sent || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		out = append(out, c)
	}
	return out, nil
}

// perEvaluation is the CPU the shadow added per request it evaluated: the
// difference per request between the two modes over the share of requests
// the shadow evaluated (the rest it skipped).
func (c ShadowCost) perEvaluation() time.Duration {
	if c.Evaluated == 0 {
		return 0
	}
	share := float64(c.Evaluated) / float64(c.Evaluated+c.Skipped)
	return time.Duration(float64(c.Shadowed.TotalCPUPerRequest()-c.Enforced.TotalCPUPerRequest()) / share)
}

type shadowTally struct{ evaluated, skipped int }

// shadowCounts reads meshwaf_agent_shadow_requests_total for shadowHost:
// skipped apart, every other verdict as evaluated.
func shadowCounts(ctx context.Context, agentURL string) (shadowTally, error) {
	const metric, host = "meshwaf_agent_shadow_requests_total", `host="` + shadowHost + `"`
	all, err := sumAgentMetric(ctx, agentURL, metric, host)
	if err != nil {
		return shadowTally{}, err
	}
	skipped, err := sumAgentMetric(ctx, agentURL, metric, host, `verdict="skipped"`)
	return shadowTally{evaluated: all - skipped, skipped: skipped}, err
}

// writeShadow is the report's section on the shadow's cost.
func (rep *Report) writeShadow(b *strings.Builder) {
	if len(rep.Shadow) == 0 {
		return
	}
	b.WriteString("## Cost of a shadow policy\n\n")
	b.WriteString("Each scenario through Envoy + agent, one request at a time, for a PL1 policy alone and for the same PL1 policy " +
		"with a PL2 shadow (`spec.shadow.crs.paranoiaLevel: 2`), taking turns in the same rounds. The agent evaluates the shadow " +
		"after answering, on a shadow slot (half the agent's inspection workers, at least one), and skips it when every slot is " +
		"busy; the verdicts were the enforced policy's throughout (the run checks every answer). CPU is Envoy's and the agent's; " +
		"the evaluations still running when a round ends are charged to the next round. A shadow never delays its own request's " +
		"answer, but on these two CPUs its work competes with the next request's, which the latency columns show.\n\n")
	b.WriteString("| scenario | CPU/req PL1 | CPU/req PL1 + PL2 shadow | ratio (rounds) | p50 / p99 PL1 | p50 / p99 with shadow | shadow evaluated / skipped | added CPU per evaluated shadow |\n")
	b.WriteString("|---|---:|---:|---|---|---|---|---:|\n")
	for _, c := range rep.Shadow {
		lo, hi := roundSpread(c.Shadowed, c.Enforced)
		fmt.Fprintf(b, "| %s | %s | %s | %.2f× (%.2f–%.2f) | %s | %s | %d / %d | %s |\n", c.Scenario,
			ms(c.Enforced.TotalCPUPerRequest()), ms(c.Shadowed.TotalCPUPerRequest()), cpuRatio(c.Shadowed, c.Enforced), lo, hi,
			pair(c.Enforced), pair(c.Shadowed), c.Evaluated, c.Skipped, ms(c.perEvaluation()))
	}
	b.WriteString("\n")
}
