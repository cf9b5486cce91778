package agent

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/meshwaf/meshwaf/agentapi"
)

// An answer that comes after Envoy's timeout is no answer: Envoy applies its
// failure mode, and the client waits the whole timeout for it. So the agent
// answers by a deadline derived from Envoy's timeout whatever the state of
// the inspection. A request it could not inspect in time, because every
// worker was busy until then (steps.go) or because its inspection outlasts
// the deadline (a body near the policy's limit can keep the CRS busy for a
// second), is answered by the policy's failure mode, as Envoy would answer
// it without an agent: Closed denies it with 503, Open lets it through.
// Never with the block response: being slow must not look like an attack.
// Such a request is audited and counted as overloaded; an inspection that
// outlasted the deadline completes in the background and its audit line
// adds what it found.

// answerShare is the part of Envoy's timeout the agent may use; the rest
// covers the transport and Envoy itself.
const answerShare = 0.8

// deadlineWithin returns the moment share of timeout from now ends.
func deadlineWithin(timeout time.Duration) time.Time {
	if timeout <= 0 {
		return time.Time{}
	}
	return time.Now().Add(time.Duration(float64(timeout) * answerShare))
}

// authzDeadline is derived from the gRPC deadline of a Check, which Envoy
// sets from the filter's timeout.
func authzDeadline(ctx context.Context) time.Time {
	d, ok := ctx.Deadline()
	if !ok {
		return time.Time{}
	}
	return deadlineWithin(time.Until(d))
}

// procTimeout reads the ext_proc message timeout the control plane puts in
// the stream's metadata; ext_proc streams carry no gRPC deadline, as they
// live as long as the HTTP request. Zero means none was sent.
func procTimeout(ctx context.Context) time.Duration {
	for _, v := range metadata.ValueFromIncomingContext(ctx, agentapi.MessageTimeoutMetadataKey) {
		if d, err := time.ParseDuration(v); err == nil && d > 0 {
			return d
		}
	}
	return 0
}

// guard runs f, a step of Coraza work over bodyBytes of body, and reports
// whether it completed.
// A panic in f (a Coraza bug on hostile input) fails the exchange instead of
// the agent: the verdict then follows the mode. With a deadline, f runs on a
// worker (steps.go) and guard returns by the deadline at the latest: if no
// worker took f by then, or the worker found too little time left to run
// it, the exchange is shed; if f is still running then, the exchange is
// late: from then on the caller only reads the policy, and the worker
// finishes and records the exchange once f returns.
func (x *exchange) guard(bodyBytes int, f func()) bool {
	// late first: once it is set, the other fields are the worker's.
	if x.late.Load() || x.failed || x.shed {
		return false
	}
	if x.deadline.IsZero() {
		x.run(f)
		return !x.failed
	}
	// Whoever claims the exchange first, the worker by completing or the
	// caller by giving up, decides who finishes it.
	const (
		completed = 1
		gaveUp    = 2
	)
	var claim atomic.Int32
	done := make(chan struct{})
	cost, class := &x.entry.waf.cost, costClass(int64(bodyBytes))
	x.in.late.Add(1)
	handed := x.in.steps.run(func() {
		defer x.in.late.Done()
		if time.Until(x.deadline) < cost.estimate(class) {
			x.shed = true
		} else {
			x.run(f)
			cost.observe(class, x.lastStep)
		}
		if claim.CompareAndSwap(0, completed) {
			close(done)
			return
		}
		x.finishLate()
	}, x.deadline)
	if !handed {
		x.in.late.Done()
		x.shed = true
		return false
	}
	timer := time.NewTimer(time.Until(x.deadline))
	defer timer.Stop()
	select {
	case <-done:
		return !x.failed && !x.shed
	case <-timer.C:
	}
	x.late.Store(true)
	if claim.CompareAndSwap(0, gaveUp) {
		return false
	}
	// f completed just now: the exchange is the caller's after all.
	x.late.Store(false)
	<-done
	return !x.failed && !x.shed
}

// run runs f, timing it and recovering from a panic. The first phase to
// run makes the exchange's transaction (inspector.begin says why).
func (x *exchange) run(f func()) {
	start := time.Now()
	defer func() {
		x.lastStep = time.Since(start)
		x.spent += x.lastStep
		if p := recover(); p != nil {
			x.failed = true
			x.in.log.Error("inspection panicked", "policy", x.entry.Name, "panic", fmt.Sprint(p))
		}
	}()
	if x.tx == nil {
		x.tx = x.entry.waf.waf.NewTransactionWithID(x.txID)
	}
	f()
}

// finishLate records a late exchange once its last phase returned. Envoy
// was answered by the failure mode; the audit line adds what the phases
// found.
func (x *exchange) finishLate() {
	v := x.collect()
	x.settle(&v)
	x.in.record(x, &v)
	x.in.log.Warn("inspection outlasted Envoy's timeout; answered by the failure mode",
		"policy", x.entry.Name, "took", x.spent.Round(time.Millisecond), "action", v.action)
}
