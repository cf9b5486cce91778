package bench

import (
	"fmt"
	"time"
)

// Pacing separates two costs (b) has and (a)'s tight loop has not: serving
// requests one at a time, with the process idle between them while the
// client and the kernel run (its caches go cold), and what the agent itself
// adds. (a) paced is the in-process worker pausing before each request for
// as long as a request to the agent spends outside Coraza; it is a
// diagnostic shown next to the profiles, never part of a goal.
type Pacing struct {
	Scenario string
	Level    int32
	Gap      time.Duration
	// Tight is (a) as the goals measure it, Paced (a) with the pauses,
	// Agent (b); the three take turns.
	Tight, Paced, Agent Measurement
}

// PacingBudget is what each of the three measurements gets.
var PacingBudget = Budget{Warmup: 20, Target: 3 * time.Second, Min: 100, Max: 3000, Rounds: 4}

func measurePacing(b Budget, t profileTarget, gap time.Duration) (*Pacing, error) {
	modes := []*mode{
		{name: "(a)", batch: t.inProcess(batch{}), meter: cpuMeter{t.worker.pid()}, blocked: t.sc.Blocked},
		{name: "(a) paced", batch: t.inProcess(batch{Gap: gap}), meter: cpuMeter{t.worker.pid()}, blocked: t.sc.Blocked},
		{name: "(b)", batch: t.toAgent(1), meter: cpuMeter{t.agentPID}, blocked: t.sc.Blocked},
	}
	if err := measureInterleaved(modes, b); err != nil {
		return nil, fmt.Errorf("pacing: %w", err)
	}
	return &Pacing{Scenario: t.sc.Name, Level: t.level, Gap: gap,
		Tight: modes[0].result(), Paced: modes[1].result(), Agent: modes[2].result()}, nil
}
