package bench

import (
	"fmt"
	"strings"
)

// Curve is (a) and (b) for the profiled scenario at several numbers of
// requests in flight, measured taking turns in the same rounds: how what
// the agent costs over Coraza changes as it goes from idling between
// requests to always having the next one waiting. It is a diagnostic shown
// next to the profiles, never part of a goal.
type Curve struct {
	Scenario string
	Level    int32
	Points   []CurvePoint
}

// CurvePoint is one number of requests in flight.
type CurvePoint struct {
	InFlight  int
	InProcess Measurement // (a)
	Agent     Measurement // (b)
}

// curveInFlight are the points of the curve: one at a time, one request
// per CPU of the 2-core machine the report is made on, then twice and four
// times that.
var curveInFlight = []int{1, 2, 4, 8}

func measureCurve(b Budget, t profileTarget) (*Curve, error) {
	var modes []*mode
	for _, n := range curveInFlight {
		modes = append(modes,
			&mode{name: fmt.Sprintf("(a), %d in flight", n), batch: t.inProcess(batch{InFlight: n}),
				meter: cpuMeter{t.worker.pid()}, blocked: t.sc.Blocked},
			&mode{name: fmt.Sprintf("(b), %d in flight", n), batch: t.toAgent(n),
				meter: cpuMeter{t.agentPID}, blocked: t.sc.Blocked})
	}
	if err := measureInterleaved(modes, b); err != nil {
		return nil, fmt.Errorf("load curve: %w", err)
	}
	c := &Curve{Scenario: t.sc.Name, Level: t.level}
	for i, n := range curveInFlight {
		c.Points = append(c.Points, CurvePoint{InFlight: n, InProcess: modes[2*i].result(), Agent: modes[2*i+1].result()})
	}
	return c, nil
}

func (rep *Report) writeCurve(b *strings.Builder) {
	c := rep.Curve
	if c == nil {
		return
	}
	fmt.Fprintf(b, "Load curve (%s, PL%d; not part of any goal): CPU per request of (a) and (b) with more requests in flight, "+
		"measured taking turns in the same rounds. One at a time, the agent idles between requests and every request "+
		"wakes it and its idle threads anew; with requests waiting, it reads and answers several per system call and "+
		"no thread sleeps.\n\n", c.Scenario, c.Level)
	b.WriteString("| in flight | (a) in-process | (b) agent | (b) − (a) | (b)/(a) |\n|---:|---:|---:|---:|---:|\n")
	for _, p := range c.Points {
		a, g := p.InProcess.CPUPerRequest(0), p.Agent.CPUPerRequest(0)
		fmt.Fprintf(b, "| %d | %s | %s | %s | %.2f× |\n", p.InFlight, ms(a), ms(g), ms(g-a), ratio(g, a))
	}
	b.WriteString("\n")
}
