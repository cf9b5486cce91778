package agent

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/corazawaf/coraza/v3/types"

	"github.com/meshwaf/meshwaf/agentapi"
)

// Audit reasons.
const (
	reasonBodyOverLimit    = "request body over limit"
	reasonInspectionFailed = "inspection failed"
	reasonNotEnforced      = "not enforced: Envoy runs the filter in observability mode"
	reasonLate             = "inspection outlasted Envoy's timeout"
	reasonShed             = "no CPU free to inspect before Envoy's timeout"
)

// verdict is the outcome of one exchange.
type verdict struct {
	action   string // actionBlocked, actionDetected, actionAllowed or actionOverloaded
	status   int    // HTTP status of a denial; zero lets the request through
	location string // redirect target when a rule redirects
	txID     string
	reason   string
	score    int // CRS inbound anomaly score
	outScore int // CRS outbound anomaly score
	rules    []AuditRule
}

// denies says whether Envoy is told to deny the request.
func (v verdict) denies() bool { return v.status != 0 }

// exchange is one HTTP request, and with ext_proc its response, inspected
// under one host policy by one Coraza transaction. It is the single
// transaction pipeline behind both protocols: ext_authz calls the request
// phases back to back, ext_proc calls each phase when Envoy's message for
// it arrives. Every phase method returns whether Envoy should deny now;
// finish settles the verdict once. An exchange is used by one goroutine at
// a time: the adapter's, or a late phase's once the adapter gave up on it.
type exchange struct {
	in       *inspector
	entry    *Entry
	policy   *agentapi.HostPolicy
	req      *httpRequest
	protocol string
	started  time.Time
	// observe is set when Envoy does not act on answers (ext_proc
	// observability mode): what would block is reported as a detection.
	observe bool

	tx       types.Transaction // nil if creating it failed
	body     []byte            // the request body Envoy sent, for the shadow
	txID     string
	spent    time.Duration // time inside Coraza
	lastStep time.Duration // of that, the last step's
	// deadline is when Envoy stops waiting for the current answer (zero:
	// no limit); late is set once a phase outlasted it, after which the
	// exchange belongs to that phase's goroutine, and shed once a phase
	// could not start in time (see deadline.go).
	deadline   time.Time
	late       atomic.Bool
	shed       bool
	ran        bool // some phase ran
	it         *types.Interruption
	rejected   bool // request body over the limit under overLimit Reject
	forced     int  // status of a denial decided outside Coraza (413)
	failed     bool // a phase panicked; later phases are skipped
	reqDone    bool
	respDone   bool
	respStatus int
	finished   bool
	v          verdict
}

func (x *exchange) prevent() bool { return x.policy.GetMode() != agentapi.Mode_MODE_DETECT }

// enforced says whether the verdict reaches the client: Prevent, and an
// Envoy that acts on answers.
func (x *exchange) enforced() bool { return x.prevent() && !x.observe }

// blocked says whether what the phases found so far denies the request.
// Detect never denies: Coraza runs DetectionOnly and never interrupts.
func (x *exchange) blocked() bool {
	return x.enforced() && (x.failed || x.it != nil || x.forced != 0)
}

// overloaded says whether a phase could not be inspected in time: it then
// goes by the failure mode (deadline.go).
func (x *exchange) overloaded() bool { return x.late.Load() || x.shed }

// failsClosed says whether a request that could not be inspected in time
// is denied (with 503): in Prevent, under failureMode Closed.
func (x *exchange) failsClosed() bool {
	return x.enforced() && x.policy.GetFailureMode() != agentapi.FailureMode_FAILURE_MODE_OPEN
}

// denies reports whether Envoy should be answered with a denial now. An
// overloaded exchange goes by the failure mode without looking at what its
// phases found, which is for their goroutine to read.
func (x *exchange) denies() bool {
	if x.overloaded() {
		return x.failsClosed()
	}
	return x.blocked()
}

func (x *exchange) interrupt(it *types.Interruption) {
	if it != nil && x.it == nil {
		x.it = it
	}
}

// reject settles a request body over the limit under overLimit Reject:
// 413 in Prevent, a detection in Detect.
func (x *exchange) reject() {
	x.rejected = true
	if x.prevent() {
		x.forced = http.StatusRequestEntityTooLarge
	}
}

func (x *exchange) rejects() bool {
	rb := x.policy.GetRequestBody()
	return rb.GetInspect() && rb.GetOverLimit() != agentapi.OverLimit_OVER_LIMIT_INSPECT_PARTIAL
}

// The phase methods below are what the adapters call. Each runs its
// Coraza work as one guarded step (deadline.go) and reports whether Envoy
// should deny now. Fields they set before the step are the caller's; fields
// the step sets are read only once it completed in time.

// requestHeaders runs phase 1.
func (x *exchange) requestHeaders() bool {
	if x.overloaded() {
		return x.denies()
	}
	x.guard(0, func() { x.phase1() })
	return x.denies()
}

// requestBody runs phase 2 (also for requests without a body: most CRS
// rules live there). partial says Envoy cut the body short.
func (x *exchange) requestBody(body []byte, partial bool) bool {
	if x.overloaded() || x.reqDone {
		return x.denies()
	}
	x.reqDone = true
	x.guard(len(body), func() { x.phase2(body, partial) })
	return x.denies()
}

// request runs both request phases as one step, for ext_authz: if they
// outlast Envoy's timeout, phase 2 still completes in the background and
// the audit line has everything it found.
func (x *exchange) request(body []byte, partial bool) bool {
	x.reqDone = true
	x.guard(len(body), func() {
		if x.phase1(); !x.blocked() {
			x.phase2(body, partial)
		}
	})
	return x.denies()
}

// responseHeaders runs phase 3 (and phase 2 first, if it has not run).
func (x *exchange) responseHeaders(status int, headers []header) bool {
	if !x.reqDone && x.requestBody(nil, false) {
		return true
	}
	if x.overloaded() || x.denies() {
		return x.denies()
	}
	x.respStatus = status
	x.guard(0, func() {
		for _, h := range headers {
			x.tx.AddResponseHeader(h.name, h.value)
		}
		x.interrupt(x.tx.ProcessResponseHeaders(status, x.req.protocol))
	})
	return x.denies()
}

// wantsResponseBody says, after phase 3, whether the body is worth
// sending: Coraza inspects only bodies of the configured content types.
func (x *exchange) wantsResponseBody() bool {
	want := false
	if !x.guard(0, func() { want = x.tx.IsResponseBodyAccessible() && x.tx.IsResponseBodyProcessable() }) {
		return false
	}
	return want
}

// responseBody runs phase 4 over at most the policy's response limit; the
// rest of a longer body passes uninspected.
func (x *exchange) responseBody(body []byte) bool {
	if x.overloaded() || x.respDone || x.denies() {
		return x.denies()
	}
	x.respDone = true
	if limit := x.policy.GetResponseBody().GetLimitBytes(); int64(len(body)) > limit {
		body = body[:limit]
	}
	x.guard(len(body), func() {
		if len(body) > 0 && x.tx.IsResponseBodyAccessible() && x.tx.IsResponseBodyProcessable() {
			if it, _, _ := x.tx.WriteResponseBody(body); it != nil {
				x.interrupt(it)
				return
			}
		}
		it, _ := x.tx.ProcessResponseBody()
		x.interrupt(it)
	})
	return x.denies()
}

// phase1 runs the request headers phase. A declared body size over the
// limit is settled first, so ext_proc can refuse it before Envoy buffers
// the body.
func (x *exchange) phase1() {
	if x.rejects() && x.req.size > x.policy.GetRequestBody().GetLimitBytes() {
		if x.reject(); x.blocked() {
			return
		}
	}
	x.ran = true
	x.interrupt(requestHeaders(x.tx, x.req))
}

// requestHeaders hands r's connection, request line and headers to tx and
// runs phase 1.
func requestHeaders(tx types.Transaction, r *httpRequest) *types.Interruption {
	tx.ProcessConnection(r.clientIP, r.clientPort, r.serverIP, r.serverPort)
	tx.ProcessURI(r.uri, r.method, r.protocol)
	for _, h := range r.headers {
		tx.AddRequestHeader(h.name, h.value)
	}
	if r.host != "" {
		tx.SetServerName(r.host)
	}
	return tx.ProcessRequestHeaders()
}

// phase2 runs the request body phase. Only the policy's first limit bytes
// are inspected; a longer body is settled by overLimit, and inspect false
// never looks at it.
func (x *exchange) phase2(body []byte, partial bool) {
	x.body = body
	if x.blocked() {
		return
	}
	rb := x.policy.GetRequestBody()
	if !rb.GetInspect() {
		body = nil
	}
	limit := rb.GetLimitBytes()
	if over := partial || int64(len(body)) > limit; over && x.rejects() && !x.rejected {
		if x.reject(); x.blocked() {
			return
		}
	}
	if int64(len(body)) > limit {
		body = body[:limit]
	}
	if len(body) > 0 && x.tx.IsRequestBodyAccessible() {
		// A write error (Coraza refusing the buffer) must not skip phase 2,
		// so only an interruption ends the request here.
		if it, _, _ := x.tx.WriteRequestBody(body); it != nil {
			x.interrupt(it)
			return
		}
	}
	it, _ := x.tx.ProcessRequestBody()
	x.interrupt(it)
}

// finish settles the verdict, records it and releases the transaction. It
// runs once; later calls return the same verdict. For a late exchange it
// only returns the verdict Envoy gets; the phase's goroutine records it.
func (x *exchange) finish() verdict {
	if x.late.Load() {
		v := verdict{txID: x.txID}
		x.settle(&v)
		return v
	}
	if x.finished {
		return x.v
	}
	x.finished = true
	v := x.collect()
	x.settle(&v)
	x.v = v
	x.in.record(x, &v)
	if x.entry.shadow != nil && x.ran && !x.overloaded() {
		x.in.startShadow(x.entry, x.req, x.body, v.txID)
	}
	return v
}

// collect runs the logging phase, copies the findings out of the
// transaction and releases it.
func (x *exchange) collect() verdict {
	v := verdict{txID: x.txID}
	if x.tx == nil {
		return v
	}
	// Whoever calls collect owns the exchange, so no deadline applies.
	if !x.failed && x.ran {
		x.run(func() {
			x.tx.ProcessLogging()
			v.rules, v.score, v.outScore = matched(x.tx)
		})
	}
	x.closeTx()
	return v
}

// settle decides the action from what the phases found.
func (x *exchange) settle(v *verdict) {
	switch {
	case x.overloaded():
		v.action, v.reason = actionOverloaded, reasonShed
		if x.late.Load() {
			v.reason = reasonLate
		}
		if x.failsClosed() {
			v.status = http.StatusServiceUnavailable
		}
		return
	case x.failed:
		v.reason, v.action = reasonInspectionFailed, actionAllowed
		if x.enforced() {
			v.action, v.status = actionBlocked, int(x.policy.GetBlockResponse().GetStatus())
		}
		return
	case x.enforced() && x.forced != 0:
		v.action, v.status = actionBlocked, x.forced
	case x.enforced() && x.it != nil:
		v.action, v.status = actionBlocked, int(x.policy.GetBlockResponse().GetStatus())
		if x.it.Action == "redirect" && x.it.Data != "" {
			v.status, v.location = redirectStatus(x.it.Status), x.it.Data
		}
	case len(v.rules) > 0 || x.rejected || x.it != nil || x.forced != 0:
		v.action = actionDetected
	default:
		v.action = actionAllowed
	}
	if x.rejected {
		v.reason = reasonBodyOverLimit
	}
	if x.observe && (x.it != nil || x.forced != 0) {
		v.reason = reasonNotEnforced
	}
}

// closeTx returns the transaction to Coraza's pool. It must run after
// everything read from the transaction has been copied out.
func (x *exchange) closeTx() {
	defer func() {
		if p := recover(); p != nil {
			x.in.log.Error("closing a transaction panicked", "policy", x.entry.Name, "panic", fmt.Sprint(p))
		}
	}()
	_ = x.tx.Close()
}

func redirectStatus(s int) int {
	if s >= 300 && s < 400 {
		return s
	}
	return http.StatusFound
}
