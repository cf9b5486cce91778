package agent

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	coraza "github.com/corazawaf/coraza/v3"
	"github.com/corazawaf/coraza/v3/types"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/metadata"

	"github.com/meshwaf/meshwaf/agentapi"
)

// stallingWAF is a real WAF whose transactions stall in phase 1 until
// release is closed: a stand-in for a body that keeps the CRS busy longer
// than Envoy waits.
type stallingWAF struct {
	coraza.WAF
	release chan struct{}
}

func (w stallingWAF) NewTransaction() types.Transaction {
	return stallingTx{Transaction: w.WAF.NewTransaction(), release: w.release}
}

func (w stallingWAF) NewTransactionWithID(id string) types.Transaction {
	return stallingTx{Transaction: w.WAF.NewTransactionWithID(id), release: w.release}
}

type stallingTx struct {
	types.Transaction
	release chan struct{}
}

func (tx stallingTx) ProcessRequestHeaders() *types.Interruption {
	<-tx.release
	return tx.Transaction.ProcessRequestHeaders()
}

// stallingInspector serves policy with a WAF that stalls until the
// returned function is called.
func stallingInspector(t *testing.T, policy *agentapi.HostPolicy) (*inspector, *syncBuffer, func()) {
	t.Helper()
	in, audit, _ := newTestInspector(t, policy)
	e := in.reg.Lookup([]string{testGateway}, "h")
	release := make(chan struct{})
	stalled := *e
	stalled.waf = &sharedWAF{key: "stalling", waf: stallingWAF{WAF: e.waf.waf, release: release}}
	in.reg.table.Store(&routes{testGateway: {policy.GetHost(): &stalled}})
	return in, audit, func() {
		close(release)
		in.late.Wait()
	}
}

func withFailureMode(m agentapi.FailureMode) func(*agentapi.HostPolicy) {
	return func(p *agentapi.HostPolicy) { p.FailureMode = m }
}

// overloadCases are what a request the agent cannot inspect in time gets:
// the failure mode's answer, never the block response, and only in Prevent.
var overloadCases = map[string]struct {
	mode       agentapi.Mode
	failure    agentapi.FailureMode
	wantStatus int
}{
	"prevent, fail closed: 503": {agentapi.Mode_MODE_PREVENT, agentapi.FailureMode_FAILURE_MODE_CLOSED, 503},
	"prevent, unspecified: 503": {agentapi.Mode_MODE_PREVENT, agentapi.FailureMode_FAILURE_MODE_UNSPECIFIED, 503},
	"prevent, fail open: pass":  {agentapi.Mode_MODE_PREVENT, agentapi.FailureMode_FAILURE_MODE_OPEN, 200},
	"detect, fail closed: pass": {agentapi.Mode_MODE_DETECT, agentapi.FailureMode_FAILURE_MODE_CLOSED, 200},
}

// An inspection that outlasts Envoy's timeout is answered by the deadline
// with the failure mode, and its audit line follows once it completes.
func TestLateInspectionIsAnsweredByTheFailureMode(t *testing.T) {
	for name, tt := range overloadCases {
		policy := func(edit ...func(*agentapi.HostPolicy)) *agentapi.HostPolicy {
			return testPolicy(testGateway, "*", append(edit, withMode(tt.mode), withFailureMode(tt.failure))...)
		}
		t.Run(name+" over ext_authz", func(t *testing.T) {
			in, audit, release := stallingInspector(t, policy())
			ctx, cancel := context.WithTimeout(gatewayCtx(testGateway), 100*time.Millisecond)
			defer cancel()
			// The phase stalls until release: an answer at all means the
			// agent did not wait for it.
			resp, err := (&authzServer{in: in}).Check(ctx, httpCheck("GET", "h", sqliPath, nil, ""))
			if err != nil {
				t.Fatal(err)
			}
			if got := verdictOf(t, resp); got != tt.wantStatus {
				t.Errorf("answer %d, want %d", got, tt.wantStatus)
			}
			if recs := audit.records(t); len(recs) != 0 {
				t.Errorf("audit before the inspection ended: %+v", recs)
			}
			release()
			checkOverloadAudit(t, audit, reasonLate, true)
			checkOverloadCount(t, in, 1)
		})
		t.Run(name+" over ext_proc", func(t *testing.T) {
			in, audit, release := stallingInspector(t, policy(withResponses(0)))
			ps := &procStream{in: in, gateways: []string{testGateway}, timeout: 100 * time.Millisecond}
			first := ps.handle(procRequest("GET", "h", sqliPath, nil, "", filterv3.ProcessingMode_BUFFERED))
			status := 200
			if ir := first.GetImmediateResponse(); ir != nil {
				status = int(ir.GetStatus().GetCode())
			}
			if status != tt.wantStatus {
				t.Errorf("answer %v, want status %d", first, tt.wantStatus)
			}
			// Later parts of the stream pass unexamined.
			if resp := ps.handle(procResponseHeaders(200, "text/html", false)); resp.GetResponseHeaders() == nil {
				t.Errorf("answer to response headers = %v", resp)
			}
			ps.finish()
			release()
			checkOverloadAudit(t, audit, reasonLate, true)
			checkOverloadCount(t, in, 1)
		})
	}
}

// With every worker busy until Envoy's deadline, a request is answered by
// the failure mode at the deadline, without being inspected at all.
func TestRequestNoWorkerTakesInTimeIsShed(t *testing.T) {
	for name, tt := range overloadCases {
		t.Run(name, func(t *testing.T) {
			in, audit, release := stallingInspector(t, testPolicy(testGateway, "*", withMode(tt.mode), withFailureMode(tt.failure)))
			in.steps = newStepRunner(1)
			defer in.steps.close()
			// The first request holds the only worker past both deadlines.
			firstCtx, cancelFirst := context.WithTimeout(gatewayCtx(testGateway), 400*time.Millisecond)
			defer cancelFirst()
			firstDone := make(chan struct{})
			go func() {
				defer close(firstDone)
				_, _ = (&authzServer{in: in}).Check(firstCtx, httpCheck("GET", "h", "/", nil, ""))
			}()
			time.Sleep(20 * time.Millisecond)
			ctx, cancel := context.WithTimeout(gatewayCtx(testGateway), 100*time.Millisecond)
			defer cancel()
			start := time.Now()
			resp, err := (&authzServer{in: in}).Check(ctx, httpCheck("GET", "h", sqliPath, nil, ""))
			if err != nil {
				t.Fatal(err)
			}
			if took := time.Since(start); took > 100*time.Millisecond {
				t.Errorf("answered after %s, past Envoy's timeout", took)
			}
			if got := verdictOf(t, resp); got != tt.wantStatus {
				t.Errorf("answer %d, want %d", got, tt.wantStatus)
			}
			<-firstDone
			// The shed request's line comes at once and lists no rules: it
			// was never inspected. The first request's line follows later.
			checkOverloadAudit(t, audit, reasonShed, false)
			release()
		})
	}
}

func checkOverloadAudit(t *testing.T, audit *syncBuffer, reason string, withRules bool) {
	t.Helper()
	recs := audit.records(t)
	if len(recs) == 0 {
		t.Fatal("no audit line")
	}
	r := recs[0]
	if r.Action != actionOverloaded || r.Reason != reason || (len(r.Rules) > 0) != withRules {
		t.Errorf("audit line = %+v, want action %s, reason %q, rules found %v", r, actionOverloaded, reason, withRules)
	}
}

func checkOverloadCount(t *testing.T, in *inspector, want float64) {
	t.Helper()
	got := testutil.ToFloat64(in.metrics.requests.WithLabelValues(testGateway, "*", verdictOverloaded))
	if got != want {
		t.Errorf("requests counted overloaded = %v, want %v", got, want)
	}
}

func TestProcTimeout(t *testing.T) {
	tests := map[string]struct {
		values []string
		want   time.Duration
	}{
		"none sent":            {nil, 0},
		"a duration":           {[]string{"500ms"}, 500 * time.Millisecond},
		"not a duration":       {[]string{"soon"}, 0},
		"first valid one wins": {[]string{"-1s", "2s"}, 2 * time.Second},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			md := metadata.MD{}
			for _, v := range tt.values {
				md.Append(agentapi.MessageTimeoutMetadataKey, v)
			}
			if got := procTimeout(metadata.NewIncomingContext(context.Background(), md)); got != tt.want {
				t.Errorf("procTimeout = %s, want %s", got, tt.want)
			}
		})
	}
	if !authzDeadline(context.Background()).IsZero() {
		t.Error("a Check without a gRPC deadline got a deadline")
	}
}

// countingStallingWAF counts the transactions made, each stalling in phase
// 1 until release.
type countingStallingWAF struct {
	stallingWAF
	made *atomic.Int32
}

func (w countingStallingWAF) NewTransaction() types.Transaction {
	w.made.Add(1)
	return w.stallingWAF.NewTransaction()
}

func (w countingStallingWAF) NewTransactionWithID(id string) types.Transaction {
	w.made.Add(1)
	return w.stallingWAF.NewTransactionWithID(id)
}

// A request waiting for an inspection worker holds no Coraza transaction:
// Coraza pools them, each keeping its transformation cache at the largest
// size it reached (megabytes after a large body), so a transaction per
// queued request made the agent's memory grow with the requests in flight
// (725 MiB at 128 in flight of 10 KB forms at PL2; 133 MiB since). With
// both workers stalled and ten requests in flight, two transactions exist.
func TestQueuedRequestsHoldNoTransaction(t *testing.T) {
	in, _, release := stallingInspector(t, testPolicy(testGateway, "*"))
	e := in.reg.Lookup([]string{testGateway}, "h")
	made := &atomic.Int32{}
	stalled := *e
	stalled.waf = &sharedWAF{key: "counting", waf: countingStallingWAF{stallingWAF: e.waf.waf.(stallingWAF), made: made}}
	in.reg.table.Store(&routes{testGateway: {"*": &stalled}})
	const inFlight = 10
	var wg sync.WaitGroup
	for range inFlight {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(gatewayCtx(testGateway), 2*time.Second)
			defer cancel()
			if _, err := (&authzServer{in: in}).Check(ctx, httpCheck("GET", "h", "/?q=1", nil, "")); err != nil {
				t.Error(err)
			}
		})
	}
	time.Sleep(300 * time.Millisecond) // every request has arrived and waits
	if n := made.Load(); n != 2 {
		t.Errorf("%d transactions made with %d requests in flight and both workers busy, want 2 (one per worker)", n, inFlight)
	}
	release()
	wg.Wait()
}
