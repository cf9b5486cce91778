package bench

// loadedEventRequests is how many requests the kernel's events are counted
// over under load: about a second of the profiled benign GET.
const loadedEventRequests = 2000

// countLoadedEvents counts perf's events per request in (a) and (b) while
// each serves the profiled scenario with t.inFlight requests in flight.
// One at a time, every goroutine hand-off in the agent wakes the idle
// second CPU's thread; these counts show how much of that remains when no
// CPU idles. Either is nil where perf does not work or a request failed.
func countLoadedEvents(t profileTarget) (a, b counters) {
	stop := countEvents(t.worker.pid())
	_, _, err := t.inProcess(batch{InFlight: t.inFlight})(1<<21, loadedEventRequests)
	if a = stop(loadedEventRequests); err != nil {
		a = nil
	}
	stop = countEvents(t.agentPID)
	_, _, err = t.toAgent(t.inFlight)(1<<21, loadedEventRequests)
	if b = stop(loadedEventRequests); err != nil {
		b = nil
	}
	return a, b
}
