package bench

import (
	"strings"
	"testing"
	"time"
)

// cpuRounds is a measurement of one request per round at these costs.
func cpuRounds(rounds ...time.Duration) Measurement {
	var sum time.Duration
	for _, r := range rounds {
		sum += r
	}
	return Measurement{Requests: len(rounds), CPU: []time.Duration{sum}, Rounds: rounds}
}

func TestGoalsCompareMeshwafWithThePeerPerRound(t *testing.T) {
	ms := time.Millisecond
	rep := &Report{InFlight: 8, Results: []Result{
		{Scenario: "benign GET", Level: 1, Envoy: cpuRounds(ms, 3*ms), Peer: cpuRounds(2*ms, 2*ms),
			Loaded: Loaded{Envoy: cpuRounds(ms, ms), Peer: cpuRounds(4*ms, 4*ms)}},
		{Scenario: "SQLi GET", Level: 2, Envoy: cpuRounds(ms, ms), Peer: cpuRounds(2*ms, 2*ms),
			Loaded: Loaded{Envoy: cpuRounds(3*ms, 3*ms), Peer: cpuRounds(2*ms, 2*ms), EnvoyAlone: cpuRounds(ms)}},
	}}
	rep.Results[0].Loaded.Envoy.Other = 2 // benign non-2xx
	rep.Results[1].Loaded.Envoy.Other = 5 // not benign: not counted
	var b strings.Builder
	rep.writeGoals(&b)
	rep.writePeer(&b)
	got := b.String()
	for _, want := range []string{
		// One at a time: 1.00× (rounds 0.50–1.50×) and 0.50×: both met.
		"| one request at a time | all 2 cases: **met** | 1.00× (benign GET, PL1; rounds 0.50–1.50×) |",
		"| 8 in flight | 1 of 2 cases: **not met** | 1.50× (SQLi GET, PL2; rounds 1.50–1.50×) |",
		"| 8 in flight, 1 benign cases | **not met** | 2 |",
		"| benign GET | 1 | 2.00 | 2.00 | 1.00× | 0.50–1.50× | met | −50 % |",
		"| SQLi GET | 2 | 1.00 | 2.00 | 0.50× | 0.50–0.50× | met | met |",
		"| SQLi GET | 2 | 3.00 | 2.00 | 1.50× | 1.50–1.50× | not met | −67 % |",
		"| agent RSS with 10 distinct policies ≤ 128 MiB | — | not measured |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("report lacks %q:\n%s", want, got)
		}
	}
}

func TestOverloadGoalsNeedEveryNon2xxToBeACountedAudited503(t *testing.T) {
	base := func() *Overload {
		return &Overload{Took: 10 * time.Second, Peak: 10,
			InTime: map[int]int{200: 95, 503: 40}, Statuses: map[int]int{200: 96, 503: 40}, Metric: 40, Audited: 40}
	}
	tests := map[string]struct {
		edit                         func(*Overload)
		throughput, accounted, no403 bool
	}{
		"all met":                  {func(*Overload) {}, true, true, true},
		"too slow":                 {func(o *Overload) { o.InTime[200] = 80 }, false, true, true},
		"a 503 not counted":        {func(o *Overload) { o.Metric = 39 }, true, false, true},
		"a 503 not audited":        {func(o *Overload) { o.Audited = 39 }, true, false, true},
		"a 504 from Envoy":         {func(o *Overload) { o.Statuses[504] = 1 }, true, false, true},
		"a request without answer": {func(o *Overload) { o.Errors = 1 }, true, false, true},
		"a 403":                    {func(o *Overload) { o.Statuses[403] = 1 }, true, false, false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			o := base()
			tc.edit(o)
			th, ac, no := o.goals()
			if th != tc.throughput || ac != tc.accounted || no != tc.no403 {
				t.Errorf("goals() = %v, %v, %v; want %v, %v, %v", th, ac, no, tc.throughput, tc.accounted, tc.no403)
			}
		})
	}
}
