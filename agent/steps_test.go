package agent

import (
	"sync"
	"testing"
	"testing/synctest"
)

func TestStepRunnerRunsEveryStepWithoutWaiting(t *testing.T) {
	tests := map[string]struct {
		workers int // 0: a nil runner
		blocked int // steps that hold a worker until the test ends
		steps   int // further steps, which must complete meanwhile
	}{
		"nil runner, a goroutine per step":     {workers: 0, steps: 3},
		"idle workers take the steps":          {workers: 2, steps: 5},
		"busy workers: a goroutine of its own": {workers: 1, blocked: 1, steps: 3},
		"more blocked steps than workers":      {workers: 2, blocked: 4, steps: 2},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var r *stepRunner
				if tt.workers > 0 {
					r = newStepRunner(tt.workers)
					defer r.close()
				}
				release := make(chan struct{})
				var held sync.WaitGroup
				held.Add(tt.blocked)
				for range tt.blocked {
					r.run(func() { held.Done(); <-release })
				}
				held.Wait()
				var done sync.WaitGroup
				done.Add(tt.steps)
				for range tt.steps {
					r.run(done.Done)
				}
				// Every further step completes while the blocked ones still
				// hold their goroutines: none waited for another.
				done.Wait()
				close(release)
			})
		})
	}
}

// Closing lets idle workers end; synctest.Test fails if any goroutine of
// the bubble is left.
func TestStepRunnerCloseEndsWorkers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newStepRunner(3)
		ran := make(chan struct{})
		r.run(func() { close(ran) })
		<-ran
		r.close()
		synctest.Wait()
	})
}
