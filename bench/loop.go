package bench

import (
	"fmt"
	"time"
)

// Budget bounds how many requests each measurement sends.
type Budget struct {
	Warmup int           // requests sent before measuring
	Target time.Duration // aim for about this much wall time per measurement
	Min    int           // never fewer requests (p99 needs a few hundred)
	Max    int           // never more
	Rounds int           // the modes take turns this many times
}

// SmokeBudget exercises every path of the harness in seconds.
var SmokeBudget = Budget{Warmup: 1, Min: 3, Max: 3, Rounds: 1}

// FullBudget is what `make bench` uses: about 5 s per measurement and at
// least 200 requests, which keeps the whole run near 10 minutes on 2 cores.
var FullBudget = Budget{Warmup: 30, Target: 5 * time.Second, Min: 200, Max: 4000, Rounds: 5}

// sendFunc sends request number seq and says whether it was blocked.
type sendFunc func(seq int) (blocked bool, err error)

// Measurement is one mode's result for one scenario.
type Measurement struct {
	Requests int
	CPU      []time.Duration // per process of the meter, over all requests
	P50, P99 time.Duration
}

// CPUPerRequest is the CPU of process i per request.
func (m Measurement) CPUPerRequest(i int) time.Duration {
	if m.Requests == 0 || i >= len(m.CPU) {
		return 0
	}
	return m.CPU[i] / time.Duration(m.Requests)
}

// TotalCPUPerRequest sums every measured process.
func (m Measurement) TotalCPUPerRequest() time.Duration {
	var sum time.Duration
	for i := range m.CPU {
		sum += m.CPUPerRequest(i)
	}
	return sum
}

// batchFunc sends k requests numbered from seq, one after another, and
// returns each one's latency and how many were blocked.
type batchFunc func(seq, k int) (lat latencies, blocked int, err error)

// sequential turns a one-request sender into a batchFunc that sends one
// request after another and times each from the client's side.
func sequential(send sendFunc) batchFunc { return paced(0, send) }

// paced is sequential with an idle pause before each request, outside the
// request's timing (the pacing diagnostic, pacing.go).
func paced(gap time.Duration, send sendFunc) batchFunc {
	return func(seq, k int) (latencies, int, error) {
		c := counter{pause: gap}
		return c.drain(send, seq, k)
	}
}

// mode is one way of sending a scenario, with what it has measured so far.
type mode struct {
	name    string
	batch   batchFunc
	meter   cpuMeter
	blocked bool // the verdict every request must get

	seq int
	n   int // requests to measure, from the warm-up's pace
	lat latencies
	cpu []time.Duration
}

// send runs k requests. Every verdict must be the expected one: a wrong
// verdict means the mode is not doing the work it claims to, and its
// numbers would lie.
func (m *mode) send(k int) (latencies, error) {
	lat, blocked, err := m.batch(m.seq, k)
	m.seq += k
	if err != nil {
		return nil, fmt.Errorf("%s: %w", m.name, err)
	}
	if want := map[bool]int{true: k, false: 0}[m.blocked]; blocked != want {
		return nil, fmt.Errorf("%s: %d of %d requests blocked, want %d", m.name, blocked, k, want)
	}
	return lat, nil
}

func (m *mode) warmUp(b Budget) error {
	start := time.Now()
	if _, err := m.send(b.Warmup); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	m.n = b.Min
	if b.Warmup > 0 && b.Target > 0 {
		pace := time.Since(start) / time.Duration(b.Warmup)
		m.n = int(b.Target / max(pace, time.Microsecond))
	}
	m.n = max(b.Min, min(m.n, b.Max))
	return nil
}

// run sends k requests and adds their latencies and CPU to m.
func (m *mode) run(k int) error {
	before, err := m.meter.read()
	if err != nil {
		return err
	}
	lat, err := m.send(k)
	if err != nil {
		return err
	}
	after, err := m.meter.read()
	if err != nil {
		return err
	}
	m.lat = append(m.lat, lat...)
	if m.cpu == nil {
		m.cpu = make([]time.Duration, len(after))
	}
	for i := range after {
		m.cpu[i] += after[i] - before[i]
	}
	return nil
}

func (m *mode) result() Measurement {
	return Measurement{Requests: len(m.lat), CPU: m.cpu, P50: m.lat.percentile(0.50), P99: m.lat.percentile(0.99)}
}

// measureInterleaved warms every mode up, then lets the modes take turns
// in b.Rounds rounds, each sending its share of requests one after
// another. Taking turns spreads slow drift (CPU frequency, a neighbour on
// a shared machine) over all modes instead of charging it to one, which
// matters because the goals compare modes with each other.
func measureInterleaved(modes []*mode, b Budget) error {
	for _, m := range modes {
		if err := m.warmUp(b); err != nil {
			return err
		}
	}
	rounds := max(b.Rounds, 1)
	for r := range rounds {
		for _, m := range modes {
			k := m.n / rounds
			if r < m.n%rounds {
				k++
			}
			if err := m.run(k); err != nil {
				return err
			}
		}
	}
	return nil
}
