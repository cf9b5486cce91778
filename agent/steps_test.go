package agent

import (
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// At most one step per worker runs at a time; the others wait their turn
// and start in the order they arrived.
func TestStepRunnerRunsStepsInArrivalOrderOnBoundedWorkers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const workers, steps = 2, 6
		r := newStepRunner(workers)
		defer r.close()
		var running, most atomic.Int32
		var mu sync.Mutex
		var order []int
		var wg, finished sync.WaitGroup
		deadline := time.Now().Add(time.Hour)
		for i := range steps {
			wg.Add(1)
			finished.Add(1)
			go func() {
				defer wg.Done()
				ok := r.run(func() {
					defer finished.Done()
					mu.Lock()
					order = append(order, i)
					mu.Unlock()
					n := running.Add(1)
					for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
					}
					time.Sleep(10 * time.Millisecond) // the CPU work of an inspection
					running.Add(-1)
				}, deadline)
				if !ok {
					t.Errorf("step %d was not run", i)
				}
			}()
			// Let step i queue before step i+1 arrives.
			synctest.Wait()
		}
		wg.Wait()
		finished.Wait()
		if got := most.Load(); got != workers {
			t.Errorf("%d steps ran at once, want %d", got, workers)
		}
		for i, s := range order {
			if s != i {
				t.Fatalf("steps started in order %v, want arrival order", order)
			}
		}
	})
}

// A step that no worker takes before its deadline is withdrawn: run says
// so by its deadline, and the step never runs.
func TestStepRunnerWithdrawsAStepNoWorkerTookInTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newStepRunner(1)
		defer r.close()
		release := make(chan struct{})
		if !r.run(func() { <-release }, time.Now().Add(time.Second)) {
			t.Fatal("the first step found no idle worker")
		}
		start := time.Now()
		var ran atomic.Bool
		if r.run(func() { ran.Store(true) }, start.Add(100*time.Millisecond)) {
			t.Fatal("a step was handed over while the only worker was busy")
		}
		if waited := time.Since(start); waited != 100*time.Millisecond {
			t.Errorf("run returned after %s, want the deadline (100ms)", waited)
		}
		close(release)
		synctest.Wait()
		if ran.Load() {
			t.Error("a withdrawn step ran")
		}
	})
}

// A nil runner (inspectors without an agent) starts a goroutine per step.
func TestNilStepRunnerStartsAGoroutinePerStep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var r *stepRunner
		release := make(chan struct{})
		var started sync.WaitGroup
		started.Add(3)
		for range 3 {
			if !r.run(func() { started.Done(); <-release }, time.Now()) {
				t.Fatal("a nil runner refused a step")
			}
		}
		started.Wait()
		close(release)
	})
}

// Closing lets idle workers end; synctest.Test fails if any goroutine of
// the bubble is left.
func TestStepRunnerCloseEndsWorkers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newStepRunner(3)
		ran := make(chan struct{})
		r.run(func() { close(ran) }, time.Now().Add(time.Second))
		<-ran
		r.close()
		synctest.Wait()
	})
}

func TestStepCostFollowsTheStepsItObserves(t *testing.T) {
	var c stepCost
	const class = 3
	if c.estimate(class) != 0 {
		t.Fatalf("a fresh estimate is %s, want 0", c.estimate(class))
	}
	c.observe(class, 80*time.Millisecond)
	if got := c.estimate(class); got != 80*time.Millisecond {
		t.Errorf("after one step of 80ms the estimate is %s", got)
	}
	for range 50 {
		c.observe(class, 80*time.Millisecond)
	}
	c.observe(class, 0)
	if got := c.estimate(class); got < 65*time.Millisecond || got > 72*time.Millisecond {
		t.Errorf("one quick step moved the estimate to %s, want about 7/8 of 80ms", got)
	}
	if got := c.estimate(class + 1); got != 0 {
		t.Errorf("another size class's estimate is %s, want 0", got)
	}
}

func TestCostClassesGrowFourfold(t *testing.T) {
	for size, want := range map[int64]int{
		-1: 0, 0: 0, 1: 1, 1023: 1, 1024: 2, 4095: 2, 4096: 3,
		10 << 10: 3, 100 << 10: 5, 900 << 10: 6, 1 << 20: 7, 1 << 30: 7,
	} {
		if got := costClass(size); got != want {
			t.Errorf("costClass(%d) = %d, want %d", size, got, want)
		}
	}
}
