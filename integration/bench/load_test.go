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
			lat, got, err := closedLoop(tc.n, p.send)(100, tc.k)
			blocked := got.blocked
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

func TestClosedLoopCountsOtherAnswersAndGoesOn(t *testing.T) {
	// Every third request gets a 503: counted, not a failure, and not a
	// block; the loop sends every request still.
	send := func(seq int) (bool, error) {
		if seq%3 == 0 {
			return false, &statusError{status: 503}
		}
		return seq%3 == 1, nil
	}
	lat, got, err := closedLoop(2, send)(0, 9)
	if err != nil {
		t.Fatal(err)
	}
	if len(lat) != 9 || got != (tally{blocked: 3, other: 3}) {
		t.Errorf("%d latencies, %+v; want 9 and 3 blocked, 3 other", len(lat), got)
	}
}
