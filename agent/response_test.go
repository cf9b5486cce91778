package agent

import (
	"context"
	"encoding/json"
	"testing"

	coraza "github.com/corazawaf/coraza/v3"
	"github.com/corazawaf/coraza/v3/types"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/meshwaf/meshwaf/agentapi"
)

func headerValue(d *authv3.DeniedHttpResponse, key string) string {
	for _, h := range d.GetHeaders() {
		if h.GetHeader().GetKey() == key {
			return h.GetHeader().GetValue()
		}
	}
	return ""
}

func TestDeniedResponse(t *testing.T) {
	host := "shop.example.com"
	tests := map[string]struct {
		block           *agentapi.BlockResponse
		wantStatus      int
		wantContentType string
		wantBody        func(txID string) string
	}{
		"default body carries the transaction id": {
			wantStatus: 403, wantContentType: "application/json",
			wantBody: func(id string) string { return `{"blocked":true,"transaction_id":"` + id + `"}` },
		},
		"policy body is returned verbatim": {
			block:      &agentapi.BlockResponse{Status: 418, ContentType: "text/plain", Body: "no tea for you"},
			wantStatus: 418, wantContentType: "text/plain",
			wantBody: func(string) string { return "no tea for you" },
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			srv, audit := newTestAuthz(t, testPolicy(testGateway, host, func(p *agentapi.HostPolicy) { p.BlockResponse = tt.block }))
			resp, err := srv.Check(gatewayCtx(testGateway), httpCheck("GET", host, sqliPath, nil, ""))
			if err != nil {
				t.Fatal(err)
			}
			d := resp.GetDeniedResponse()
			if d == nil {
				t.Fatalf("not denied: %v", resp)
			}
			recs := audit.records(t)
			if len(recs) != 1 {
				t.Fatalf("audit = %+v", recs)
			}
			rec := recs[0]
			id := headerValue(d, TransactionIDHeader)
			if id == "" || id != rec.TransactionID {
				t.Errorf("transaction id header %q, audit %q", id, rec.TransactionID)
			}
			if got := int(d.GetStatus().GetCode()); got != tt.wantStatus {
				t.Errorf("status = %d, want %d", got, tt.wantStatus)
			}
			if got := headerValue(d, "content-type"); got != tt.wantContentType {
				t.Errorf("content-type = %q, want %q", got, tt.wantContentType)
			}
			if want := tt.wantBody(id); d.GetBody() != want {
				t.Errorf("body = %q, want %q", d.GetBody(), want)
			}
			if rec.AnomalyScore < 5 || rec.Mode != "Prevent" || rec.Policy != "shop/shop" || rec.Gateway != testGateway ||
				rec.Client != "127.0.0.1" || rec.Method != "GET" || rec.Path != sqliPath || rec.Host != host {
				t.Errorf("audit record = %+v", rec)
			}
		})
	}
}

func TestDefaultBodyIsJSON(t *testing.T) {
	resp := denyResponse(testPolicy(testGateway, "*"), verdict{status: 403, txID: `we"ird\id`})
	var body map[string]any
	if err := json.Unmarshal([]byte(resp.GetDeniedResponse().GetBody()), &body); err != nil {
		t.Fatalf("default body is not JSON: %v", err)
	}
	if body["transaction_id"] != `we"ird\id` || body["blocked"] != true {
		t.Errorf("body = %v", body)
	}
}

// panickyWAF stands in for a Coraza bug: every transaction panics.
type panickyWAF struct{}

func (panickyWAF) NewTransaction() types.Transaction             { panic("boom") }
func (panickyWAF) NewTransactionWithID(string) types.Transaction { panic("boom") }

var _ coraza.WAF = panickyWAF{}

func TestCheckRecoversPerMode(t *testing.T) {
	tests := map[string]struct {
		mode       agentapi.Mode
		wantStatus int
	}{
		"prevent fails closed": {agentapi.Mode_MODE_PREVENT, 403},
		"detect fails open":    {agentapi.Mode_MODE_DETECT, 200},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			srv, _ := newTestAuthz(t)
			p := testPolicy(testGateway, "*", withMode(tt.mode))
			srv.in.reg.Replace(map[string]*Entry{"x": {Name: "x", Policy: withDefaults(p), waf: &sharedWAF{key: "k", waf: panickyWAF{}}}})
			resp, err := srv.Check(gatewayCtx(testGateway), httpCheck("GET", "h", "/", nil, ""))
			if err != nil {
				t.Fatalf("gRPC error: %v", err)
			}
			if got := verdictOf(t, resp); got != tt.wantStatus {
				t.Errorf("status = %d, want %d", got, tt.wantStatus)
			}
		})
	}
}

func TestCheckWithoutGatewayMetadataAllows(t *testing.T) {
	srv, _ := newTestAuthz(t, testPolicy(testGateway, "*"))
	resp, err := srv.Check(context.Background(), httpCheck("GET", "h", sqliPath, nil, ""))
	if err != nil {
		t.Fatal(err)
	}
	if got := verdictOf(t, resp); got != 200 {
		t.Errorf("status = %d, want 200: no gateway, no policy", got)
	}
}
