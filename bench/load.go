package bench

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// LoadInFlight is how many requests the loaded measurement keeps in
// flight: four per CPU of the 2-core machine the report is made on. With
// as many as CPUs (2, the previous choice) the agent still idled whenever
// both requests were with the client or the kernel, and paid the
// one-at-a-time costs (woken threads, cold caches) on part of its
// requests; with four per CPU the next request is always waiting, which is
// a busy node. More only lengthens the queue every latency includes. The
// load curve (curve.go) measures 1, 2, 4 and 8 for one scenario.
const LoadInFlight = 8

// counter hands out request numbers to the senders of one batch and stops
// them all once one fails.
type counter struct {
	// pause idles before each request, outside its timing (pacing.go).
	pause  time.Duration
	next   atomic.Int64
	failed atomic.Bool
}

// drain sends requests numbered from seq, taking the next free number each
// time, until k are taken or some sender failed. It returns the latency of
// each request it sent, timed from the client's side.
func (c *counter) drain(send sendFunc, seq, k int) (latencies, int, error) {
	var lat latencies
	blocked := 0
	for !c.failed.Load() {
		if c.pause > 0 {
			time.Sleep(c.pause)
		}
		i := int(c.next.Add(1)) - 1
		if i >= k {
			break
		}
		t := time.Now()
		b, err := send(seq + i)
		if err != nil {
			c.failed.Store(true)
			return nil, 0, fmt.Errorf("request %d: %w", seq+i, err)
		}
		lat = append(lat, time.Since(t))
		if b {
			blocked++
		}
	}
	return lat, blocked, nil
}

// closedLoop turns a one-request sender into a batchFunc that keeps n
// requests in flight: n senders each send the next request as soon as
// their previous one is answered. The load is then n whatever the latency
// (a closed loop), as for a gateway whose clients wait for answers; an open
// loop at a fixed rate would measure queueing instead once the rate is near
// what the CPUs can serve.
func closedLoop(n int, send sendFunc) batchFunc {
	if n <= 1 {
		return sequential(send)
	}
	return func(seq, k int) (latencies, int, error) {
		var c counter
		lats, blocked, errs := make([]latencies, n), make([]int, n), make([]error, n)
		var wg sync.WaitGroup
		for s := range n {
			wg.Go(func() { lats[s], blocked[s], errs[s] = c.drain(send, seq, k) })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return nil, 0, err
		}
		all, total := make(latencies, 0, k), 0
		for s := range n {
			all, total = append(all, lats[s]...), total+blocked[s]
		}
		return all, total, nil
	}
}

// Loaded is one scenario at one level measured with requests in flight:
// (a) with as many goroutines inspecting in its worker, (b)–(d) with as
// many concurrent requests from the client.
type Loaded struct {
	InProcess  Measurement // (a)
	Agent      Measurement // (b)
	Envoy      Measurement // (c)
	EnvoyAlone Measurement // (d)
}

// cpuRatio is (b)/(a) in CPU per request under load.
func (l Loaded) cpuRatio() float64 {
	return ratio(l.Agent.TotalCPUPerRequest(), l.InProcess.TotalCPUPerRequest())
}

// loadedModes are the modes of Loaded, in its field order. Each request
// still runs exactly as one at a time does (the worker's goroutines share
// one WAF as the agent's requests do); only how many are in flight differs.
func loadedModes(sc Scenario, pl int32, t *targets) []*mode {
	host, n := plHost(pl), t.inFlight
	name := func(m string) string { return fmt.Sprintf("%s, %d in flight", m, n) }
	return []*mode{
		{name: name("(a) in-process"), batch: inProcBatch(t.worker, pl, sc, n), meter: cpuMeter{t.worker.pid()}, blocked: sc.Blocked},
		{name: name("(b) agent"), batch: closedLoop(n, func(i int) (bool, error) { return t.agent.send(sc, host, i) }), meter: cpuMeter{t.pids.agent}, blocked: sc.Blocked},
		{name: name("(c) Envoy + agent"), batch: closedLoop(n, func(i int) (bool, error) { return t.gwLoaded.send(sc, host, i) }), meter: cpuMeter{t.pids.envoy, t.pids.agent}, blocked: sc.Blocked},
		{name: name("(d) Envoy alone"), batch: closedLoop(n, func(i int) (bool, error) { return t.plainLoaded.send(sc, host, i) }), meter: cpuMeter{t.pids.plainEnvoy}},
	}
}
