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

// sendFunc sends request number seq and says whether it was blocked. An
// answer that is neither a pass nor the WAF's block comes back as a
// *statusError, which the loops count instead of stopping at.
type sendFunc func(seq int) (blocked bool, err error)

// statusError is an HTTP answer other than 2xx and 403: a gateway that
// could not get a verdict (503, 504) or failed otherwise.
type statusError struct{ status int }

func (e *statusError) Error() string { return fmt.Sprintf("status %d", e.status) }

// tally counts the answers of a batch that were not a plain pass.
type tally struct {
	blocked int // the WAF blocked (403, or a denied Check)
	other   int // any other non-2xx answer (statusError)
}

// Measurement is one mode's result for one scenario.
type Measurement struct {
	Requests int
	CPU      []time.Duration // per process of the meter, over all requests
	P50, P99 time.Duration
	// Other counts the answers that were neither 2xx nor the WAF's 403.
	Other int
	// Wall is the time the measured requests took, for requests per second.
	Wall time.Duration
	// Rounds is the CPU per request (every process of the meter) of each
	// round, to show how much a comparison moves between rounds.
	Rounds []time.Duration
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

// PerSecond is the measured requests per second of wall time.
func (m Measurement) PerSecond() float64 {
	if m.Wall <= 0 {
		return 0
	}
	return float64(m.Requests) / m.Wall.Seconds()
}

// batchFunc sends k requests numbered from seq and returns each one's
// latency and what the answers were.
type batchFunc func(seq, k int) (lat latencies, t tally, err error)

// sequential turns a one-request sender into a batchFunc that sends one
// request after another and times each from the client's side.
func sequential(send sendFunc) batchFunc {
	return func(seq, k int) (latencies, tally, error) {
		var c counter
		return c.drain(send, seq, k)
	}
}

// mode is one way of sending a scenario, with what it has measured so far.
type mode struct {
	name    string
	batch   batchFunc
	meter   cpuMeter
	blocked bool // the verdict every request must get

	seq    int
	n      int // requests to measure, from the warm-up's pace
	lat    latencies
	cpu    []time.Duration
	other  int
	wall   time.Duration
	rounds []time.Duration
}

// send runs k requests. Every verdict must be the expected one: a wrong
// verdict means the mode is not doing the work it claims to, and its
// numbers would lie. Answers that are no verdict at all (statusError) are
// counted and reported instead, since how many there are is a result.
func (m *mode) send(k int) (latencies, int, error) {
	lat, t, err := m.batch(m.seq, k)
	m.seq += k
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", m.name, err)
	}
	if want := map[bool]int{true: k, false: 0}[m.blocked]; t.blocked != want {
		return nil, 0, fmt.Errorf("%s: %d of %d requests blocked, want %d (%d other non-2xx)", m.name, t.blocked, k, want, t.other)
	}
	return lat, t.other, nil
}

func (m *mode) warmUp(b Budget) error {
	start := time.Now()
	if _, _, err := m.send(b.Warmup); err != nil {
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
	start := time.Now()
	lat, other, err := m.send(k)
	if err != nil {
		return err
	}
	wall := time.Since(start)
	after, err := m.meter.read()
	if err != nil {
		return err
	}
	m.lat = append(m.lat, lat...)
	m.other += other
	m.wall += wall
	if m.cpu == nil {
		m.cpu = make([]time.Duration, len(after))
	}
	var round time.Duration
	for i := range after {
		m.cpu[i] += after[i] - before[i]
		round += after[i] - before[i]
	}
	if k > 0 {
		m.rounds = append(m.rounds, round/time.Duration(k))
	}
	return nil
}

func (m *mode) result() Measurement {
	return Measurement{Requests: len(m.lat), CPU: m.cpu, P50: m.lat.percentile(0.50), P99: m.lat.percentile(0.99),
		Other: m.other, Wall: m.wall, Rounds: m.rounds}
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
