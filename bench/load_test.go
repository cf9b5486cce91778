package bench

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

const requestTime = 20 * time.Millisecond

// probe is a sendFunc that records which requests it got and how many
// were in flight at most.
type probe struct {
	mu              sync.Mutex
	seqs            []int
	active, maxSeen int
	failAt          int // a request number to fail, or -1
}

func (p *probe) send(seq int) (bool, error) {
	p.mu.Lock()
	p.seqs = append(p.seqs, seq)
	p.active++
	p.maxSeen = max(p.maxSeen, p.active)
	p.mu.Unlock()
	// Long enough for every sender to start its request meanwhile, even
	// on a busy machine under -race.
	time.Sleep(requestTime)
	p.mu.Lock()
	p.active--
	p.mu.Unlock()
	if seq == p.failAt {
		return false, errors.New("boom")
	}
	return seq%2 == 0, nil
}

func TestClosedLoopKeepsNInFlight(t *testing.T) {
	tests := map[string]struct {
		n, k, wantMax int
	}{
		"one at a time":                 {n: 1, k: 6, wantMax: 1},
		"two in flight":                 {n: 2, k: 10, wantMax: 2},
		"four in flight":                {n: 4, k: 12, wantMax: 4},
		"fewer requests than in flight": {n: 4, k: 2, wantMax: 2},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p := &probe{failAt: -1}
			lat, blocked, err := closedLoop(tc.n, p.send)(100, tc.k)
			if err != nil {
				t.Fatal(err)
			}
			slices.Sort(p.seqs)
			var want []int
			for i := range tc.k {
				want = append(want, 100+i)
			}
			if !slices.Equal(p.seqs, want) {
				t.Errorf("sent %v, want each of %v once", p.seqs, want)
			}
			if len(lat) != tc.k || blocked != (tc.k+1)/2 {
				t.Errorf("%d latencies and %d blocked, want %d and %d", len(lat), blocked, tc.k, (tc.k+1)/2)
			}
			if p.maxSeen != tc.wantMax {
				t.Errorf("at most %d in flight, want %d", p.maxSeen, tc.wantMax)
			}
			if slices.Min(lat) < requestTime {
				t.Errorf("latency %v shorter than the request", slices.Min(lat))
			}
		})
	}
}

func TestClosedLoopStopsAtTheFirstError(t *testing.T) {
	p := &probe{failAt: 3}
	_, _, err := closedLoop(2, p.send)(0, 100)
	if err == nil || !strings.Contains(err.Error(), "request 3: boom") {
		t.Fatalf("err = %v, want request 3's", err)
	}
	// The other sender stops at its next request: it may have one or two
	// in flight while request 3 fails, but must not go on to the 100th.
	if len(p.seqs) > 20 {
		t.Errorf("%d requests sent after a failure at the 4th", len(p.seqs))
	}
}

func TestPacedPausesOutsideTheTiming(t *testing.T) {
	p := &probe{failAt: -1}
	start := time.Now()
	const pause = 100 * time.Millisecond
	lat, _, err := paced(pause, p.send)(0, 3)
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 3*(pause+requestTime) {
		t.Errorf("3 requests with %v pauses took %v", pause, took)
	}
	if slices.Max(lat) >= pause {
		t.Errorf("latency %v includes the pause", slices.Max(lat))
	}
}

// cpuOnly is a measurement of one request that cost cpu.
func cpuOnly(cpu time.Duration) Measurement {
	return Measurement{Requests: 1, CPU: []time.Duration{cpu}}
}

func TestLoadedSectionClaimsTheRatioOnlyWhenEveryCaseMeetsIt(t *testing.T) {
	loaded := func(a, b time.Duration) Result {
		// One at a time, (b) is 1.5× (a): that row must not follow the
		// loaded numbers.
		return Result{Scenario: "benign GET", Level: 1, InProcess: cpuOnly(2 * time.Millisecond), Agent: cpuOnly(3 * time.Millisecond),
			Loaded: Loaded{InProcess: cpuOnly(a), Agent: cpuOnly(b)}}
	}
	ms := time.Millisecond
	tests := map[string]struct {
		results  []Result
		want     []string
		dontWant string
	}{
		"every case within 1.1×": {
			results:  []Result{loaded(2*ms, 2100*time.Microsecond), loaded(10*ms, 10*ms)},
			want:     []string{"in all 2 cases (worst 1.05×", "| busy, 2 in flight | all 2 cases: **met** | 1.05×"},
			dontWant: "not all",
		},
		"one case above": {
			results:  []Result{loaded(2*ms, 2100*time.Microsecond), loaded(2*ms, 2400*time.Microsecond)},
			want:     []string{"in 1 of 2 cases, not all (worst 1.20×", "| busy, 2 in flight | 1 of 2 cases: **not met** | 1.20×"},
			dontWant: "in all",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			rep := &Report{InFlight: 2, Results: tc.results}
			var b strings.Builder
			rep.writeGoals(&b)
			rep.writeLoaded(&b)
			got := b.String()
			// One at a time, (b) is 1.5× (a).
			if !strings.Contains(got, "| one request at a time | 0 of 2 cases: **not met** | 1.50×") {
				t.Errorf("goal table does not show the one-at-a-time ratio:\n%s", got)
			}
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("report lacks %q:\n%s", w, got)
				}
			}
			if strings.Contains(got, tc.dontWant) {
				t.Errorf("report says %q:\n%s", tc.dontWant, got)
			}
		})
	}
}

func TestLoadCurveShowsEveryPoint(t *testing.T) {
	ms := time.Millisecond
	rep := &Report{Curve: &Curve{Scenario: "benign GET", Level: 1, Points: []CurvePoint{
		{InFlight: 1, InProcess: cpuOnly(ms), Agent: cpuOnly(1500 * time.Microsecond)},
		{InFlight: 8, InProcess: cpuOnly(ms), Agent: cpuOnly(1020 * time.Microsecond)},
	}}}
	var b strings.Builder
	rep.writeCurve(&b)
	for _, w := range []string{"Load curve (benign GET, PL1", "| 1 | 1.00 | 1.50 | 0.50 | 1.50× |", "| 8 | 1.00 | 1.02 | 0.020 | 1.02× |"} {
		if !strings.Contains(b.String(), w) {
			t.Errorf("curve lacks %q:\n%s", w, b.String())
		}
	}
}

func TestPacingSaysWhenCacheCostsCoverTheWholeDifference(t *testing.T) {
	us := time.Microsecond
	tests := map[string]struct {
		paced time.Duration
		want  string
	}{
		"part of it":         {1100 * us, "Of the 0.30 ms (b) costs more than (a), 0.10 ms (33%)"},
		"all of it and more": {1400 * us, "Pausing alone costs (a) 0.40 ms more, as much as or more than the 0.30 ms"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			rep := &Report{Pacing: &Pacing{Scenario: "benign GET", Level: 1, Gap: 500 * us,
				Tight: cpuOnly(1000 * us), Paced: cpuOnly(tc.paced), Agent: cpuOnly(1300 * us)}}
			var b strings.Builder
			rep.writePacing(&b)
			if !strings.Contains(b.String(), tc.want) {
				t.Errorf("pacing text lacks %q:\n%s", tc.want, b.String())
			}
		})
	}
}

func TestPinningTextComparesBothWays(t *testing.T) {
	us := time.Microsecond
	rep := &Report{Pinning: &Pinning{Scenario: "benign GET", Level: 1,
		InProcess: cpuOnly(1000 * us), Agent: cpuOnly(1300 * us), PinnedInProcess: cpuOnly(1000 * us), PinnedAgent: cpuOnly(1050 * us)}}
	var b strings.Builder
	rep.writePinning(&b)
	for _, want := range []string{"| as measured for the goals | 1.00 | 1.30 | 0.30 | 1.30× |", "| pinned | 1.00 | 1.05 | 0.050 | 1.05× |"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("pinning text lacks %q:\n%s", want, b.String())
		}
	}
}
