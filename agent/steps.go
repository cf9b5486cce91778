package agent

import (
	"sync/atomic"
	"time"
)

// stepRunner runs the Coraza steps that have a deadline (deadline.go) on a
// fixed set of workers, about one per CPU, taking steps in arrival order.
//
// Why bounded: inspections are CPU work. Started all at once, eight
// inspections on two CPUs share them and all finish late together, so that
// under a modest overload every request misses Envoy's deadline. With a
// worker per CPU, each inspection runs at full speed and the others wait
// their turn; a step still waiting when its deadline comes is withdrawn
// and answered by the policy's failure mode without costing any CPU
// (load shedding), and a worker skips a step whose remaining time is
// shorter than the WAF usually needs (stepCost), as running it would only
// waste the CPU the next one could use.
//
// Why long-lived workers: a step needs a goroutine other than its caller's,
// so that the caller can answer Envoy by the deadline, but a fresh
// goroutine starts with a small stack that must grow to Coraza's call depth,
// copying itself several times, on every request. A worker that stays keeps
// its grown stack.
//
// A nil *stepRunner starts a goroutine per step and never sheds, which is
// what inspectors built without an agent (tests, benchmarks) get unless
// they ask for one.
type stepRunner struct {
	work chan func()
	quit chan struct{}
}

// newStepRunner starts workers goroutines.
func newStepRunner(workers int) *stepRunner {
	// Unbuffered, so that a step is either on a worker or still with its
	// caller, who can withdraw it; Go queues blocked senders first come,
	// first served.
	r := &stepRunner{work: make(chan func()), quit: make(chan struct{})}
	for range max(workers, 1) {
		go r.serve()
	}
	return r
}

// run hands f to the next idle worker, waiting for one until deadline.
// It reports false if no worker took f by then (or the runner closed), in
// which case f never runs.
func (r *stepRunner) run(f func(), deadline time.Time) bool {
	if r == nil {
		go f()
		return true
	}
	select {
	case r.work <- f:
		return true
	default:
	}
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case r.work <- f:
		return true
	case <-timer.C:
		return false
	case <-r.quit:
		return false
	}
}

func (r *stepRunner) serve() {
	for {
		select {
		case f := <-r.work:
			f()
		case <-r.quit:
			return
		}
	}
}

// close lets the workers end once their current step, if any, returned.
// It does not wait for them: a late step may run for a long time, and
// shutdown bounds its wait for those separately.
func (r *stepRunner) close() {
	if r != nil {
		close(r.quit)
	}
}

// stepCost estimates how long a step of one WAF takes, for steps over a
// body of one size class (costClass; a step that reads no body, such as
// ext_proc's request headers, is class 0): a benign GET and a 1 MB form
// differ a thousandfold, and one average of both would let the large form
// start with far too little time left. Each class keeps a moving average of the
// steps it ran (each new one weighs 1/8, the first counts in full). It is
// read to decide whether a step that waited can still finish in time, so a
// rough figure is enough: concurrent updates may lose one another's sample.
type stepCost struct{ nanos [costClasses]atomic.Int64 }

// costClasses are: no body, then bodies under 1 KiB, 4 KiB, 16 KiB,
// 64 KiB, 256 KiB, 1 MiB, and larger.
const costClasses = 8

func costClass(bodyBytes int64) int {
	class := 0
	for limit := int64(1 << 10); bodyBytes > 0 && class < costClasses-1; limit *= 4 {
		class++
		if bodyBytes < limit {
			break
		}
	}
	return class
}

func (c *stepCost) observe(class int, d time.Duration) {
	n := &c.nanos[class]
	old := n.Load()
	if old == 0 {
		n.Store(int64(d))
		return
	}
	n.Store(old + (int64(d)-old)/8)
}

func (c *stepCost) estimate(class int) time.Duration { return time.Duration(c.nanos[class].Load()) }
