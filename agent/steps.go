package agent

// stepRunner runs the Coraza steps that have a deadline (deadline.go) on
// goroutines that live as long as the agent. A step needs a goroutine of its
// own so that its caller can answer Envoy by the deadline, but a fresh
// goroutine starts with a small stack that must grow to Coraza's call depth,
// copying itself several times, on every request: for a benign GET that was
// the largest part of the agent's own instructions per Check. A worker that
// stays keeps its grown stack, and handing it a step costs about as much as
// running the step inline.
//
// A nil *stepRunner starts a goroutine per step, which is what inspectors
// built without an agent (tests, benchmarks) get unless they ask for one.
type stepRunner struct {
	work chan func()
	quit chan struct{}
}

// newStepRunner starts workers goroutines, one per CPU the agent may use
// being enough: more steps than CPUs at a time only queue for a CPU.
func newStepRunner(workers int) *stepRunner {
	r := &stepRunner{work: make(chan func()), quit: make(chan struct{})}
	for range max(workers, 1) {
		go r.serve()
	}
	return r
}

// run starts f on an idle worker, or on a goroutine of its own when every
// worker is busy, so that a step never waits for another one (a step that
// outlived its deadline keeps its worker for as long as Coraza needs).
func (r *stepRunner) run(f func()) {
	if r != nil {
		select {
		case r.work <- f:
			return
		default:
		}
	}
	go f()
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
