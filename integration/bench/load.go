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
// a busy node. More only lengthens the queue every latency includes.
const LoadInFlight = 8

// counter hands out request numbers to the senders of one batch and stops
// them all once one fails.
type counter struct {
	next   atomic.Int64
	failed atomic.Bool
}

// drain sends requests numbered from seq, taking the next free number each
// time, until k are taken or some sender failed. It returns the latency of
// each request it sent, timed from the client's side, and what the
// answers were; an answer that is no verdict (statusError) is counted, not
// a failure.
func (c *counter) drain(send sendFunc, seq, k int) (latencies, tally, error) {
	var lat latencies
	var t tally
	for !c.failed.Load() {
		i := int(c.next.Add(1)) - 1
		if i >= k {
			break
		}
		start := time.Now()
		b, err := send(seq + i)
		var status *statusError
		switch {
		case errors.As(err, &status):
			t.other++
		case err != nil:
			c.failed.Store(true)
			return nil, tally{}, fmt.Errorf("request %d: %w", seq+i, err)
		case b:
			t.blocked++
		}
		lat = append(lat, time.Since(start))
	}
	return lat, t, nil
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
	return func(seq, k int) (latencies, tally, error) {
		var c counter
		lats, tallies, errs := make([]latencies, n), make([]tally, n), make([]error, n)
		var wg sync.WaitGroup
		for s := range n {
			wg.Go(func() { lats[s], tallies[s], errs[s] = c.drain(send, seq, k) })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return nil, tally{}, err
		}
		all, total := make(latencies, 0, k), tally{}
		for s := range n {
			all = append(all, lats[s]...)
			total.blocked += tallies[s].blocked
			total.other += tallies[s].other
		}
		return all, total, nil
	}
}

// Loaded is one scenario at one level measured with requests in flight:
// (a) with as many goroutines inspecting in its worker, (b)–(d) and the
// peer with as many concurrent requests from the client.
type Loaded struct {
	InProcess  Measurement // (a)
	Agent      Measurement // (b)
	Envoy      Measurement // (c)
	EnvoyAlone Measurement // (d)
	Peer       Measurement // nginx + ModSecurity
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
		{name: name(peerName), batch: closedLoop(n, func(i int) (bool, error) { return t.peerLoaded.send(sc, host, i) }), meter: t.pids.peer, blocked: sc.Blocked},
	}
}
