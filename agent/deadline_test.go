package agent

import (
	"context"
	"testing"
	"time"

	coraza "github.com/corazawaf/coraza/v3"
	"github.com/corazawaf/coraza/v3/types"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
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

// An inspection that outlasts Envoy's timeout is answered by the deadline
// per mode, and its audit line follows once it completes.
func TestLateInspectionIsAnsweredPerMode(t *testing.T) {
	tests := map[string]struct {
		mode       agentapi.Mode
		wantStatus int
		wantAction string
	}{
		"prevent denies": {agentapi.Mode_MODE_PREVENT, 403, actionBlocked},
		"detect allows":  {agentapi.Mode_MODE_DETECT, 200, actionDetected},
	}
	for name, tt := range tests {
		t.Run(name+" over ext_authz", func(t *testing.T) {
			in, audit, release := stallingInspector(t, testPolicy(testGateway, "*", withMode(tt.mode)))
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
			checkLateAudit(t, audit, tt.wantAction)
		})
		t.Run(name+" over ext_proc", func(t *testing.T) {
			in, audit, release := stallingInspector(t, testPolicy(testGateway, "*", withMode(tt.mode), withResponses(0)))
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
			checkLateAudit(t, audit, tt.wantAction)
		})
	}
}

func checkLateAudit(t *testing.T, audit *syncBuffer, action string) {
	t.Helper()
	recs := audit.records(t)
	if len(recs) != 1 {
		t.Fatalf("audit = %+v, want one line", recs)
	}
	if r := recs[0]; r.Action != action || r.Reason != reasonLate || len(r.Rules) == 0 {
		t.Errorf("audit line = %+v, want action %s, reason %q and the rules found", r, action, reasonLate)
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
