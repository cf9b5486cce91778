package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/meshwaf/meshwaf/agentapi"
)

const testGateway = "istio-ingress/public"

// syncBuffer is a bytes.Buffer safe for the concurrent reads tests do
// while the server writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) records(t *testing.T) []AuditRecord {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []AuditRecord
	for _, line := range strings.Split(strings.TrimSpace(b.buf.String()), "\n") {
		if line == "" {
			continue
		}
		var rec AuditRecord
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("audit line %q is not JSON: %v", line, err)
		}
		out = append(out, rec)
	}
	return out
}

// newTestInspector serves the given policies (one per host on their
// gateway) with a fixed clock.
func newTestInspector(t *testing.T, policies ...*agentapi.HostPolicy) (*inspector, *syncBuffer, *metrics) {
	t.Helper()
	reg := NewRegistry(sharedCompile)
	entries := map[string]*Entry{}
	for _, p := range policies {
		name := agentapi.ResourceName(p.GetGateway(), p.GetHost())
		e, err := reg.Prepare(name, "1", p)
		if err != nil {
			t.Fatalf("prepare %s: %v", name, err)
		}
		entries[name] = e
	}
	reg.Replace(entries)
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	audit := &syncBuffer{}
	// Steps with a deadline run on workers, as in the agent.
	steps := newStepRunner(2)
	t.Cleanup(steps.close)
	return &inspector{
		reg: reg, audit: NewAuditLog(audit), metrics: m, log: discardLogger(),
		now:   func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) },
		steps: steps,
	}, audit, m
}

// newTestAuthz is an ext_authz server over newTestInspector.
func newTestAuthz(t *testing.T, policies ...*agentapi.HostPolicy) (*authzServer, *syncBuffer) {
	t.Helper()
	in, audit, _ := newTestInspector(t, policies...)
	return &authzServer{in: in}, audit
}

// httpCheck builds a CheckRequest the way Envoy sends it with
// encode_raw_headers and pack_as_bytes.
func httpCheck(method, host, path string, headers map[string]string, body string) *authv3.CheckRequest {
	hm := &corev3.HeaderMap{}
	hm.Headers = append(hm.Headers,
		&corev3.HeaderValue{Key: ":authority", RawValue: []byte(host)},
		&corev3.HeaderValue{Key: ":method", RawValue: []byte(method)},
		&corev3.HeaderValue{Key: ":path", RawValue: []byte(path)},
		&corev3.HeaderValue{Key: "user-agent", RawValue: []byte("curl/8.5.0")},
		&corev3.HeaderValue{Key: "accept", RawValue: []byte("*/*")},
		&corev3.HeaderValue{Key: "x-request-id", RawValue: []byte("req-1")},
	)
	if body != "" {
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: "content-length", RawValue: []byte(strconv.Itoa(len(body)))})
	}
	keys := make([]string, 0, len(headers))
	for k := range headers {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: k, RawValue: []byte(headers[k])})
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:      &authv3.AttributeContext_Peer{Address: socketAddr("127.0.0.1", 54321)},
		Destination: &authv3.AttributeContext_Peer{Address: socketAddr("10.0.0.2", 8080)},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: "1", Method: method, Host: host, Path: path, Protocol: "HTTP/1.1", Scheme: "http",
			HeaderMap: hm, RawBody: []byte(body), Size: int64(len(body)),
		}},
	}}
}

func socketAddr(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

func gatewayCtx(gateways ...string) context.Context {
	md := metadata.MD{}
	for _, gw := range gateways {
		md.Append(agentapi.GatewayMetadataKey, gw)
	}
	return metadata.NewIncomingContext(context.Background(), md)
}

var (
	sqliPath = "/?id=" + url.QueryEscape("1' OR 1=1--")
	xssForm  = "comment=" + url.QueryEscape("<script>alert(1)</script>")
	formType = map[string]string{"content-type": "application/x-www-form-urlencoded"}
)

func withMode(m agentapi.Mode) func(*agentapi.HostPolicy) {
	return func(p *agentapi.HostPolicy) { p.Mode = m }
}

func withAudit(l agentapi.AuditLevel) func(*agentapi.HostPolicy) {
	return func(p *agentapi.HostPolicy) { p.Audit = l }
}

func withBody(inspect bool, limit int64, over agentapi.OverLimit) func(*agentapi.HostPolicy) {
	return func(p *agentapi.HostPolicy) {
		p.RequestBody = &agentapi.RequestBody{Inspect: inspect, LimitBytes: limit, OverLimit: over}
	}
}

// verdictOf summarizes a CheckResponse as the HTTP status Envoy would send
// (200 for allowed).
func verdictOf(t *testing.T, resp *authv3.CheckResponse) int {
	t.Helper()
	if resp.GetStatus().GetCode() == int32(codes.OK) {
		if resp.GetOkResponse() == nil {
			t.Fatal("OK status without ok_response")
		}
		return 200
	}
	d := resp.GetDeniedResponse()
	if d == nil {
		t.Fatalf("denied status without denied_response: %v", resp)
	}
	return int(d.GetStatus().GetCode())
}

func ruleIDs(rules []AuditRule) []int {
	ids := make([]int, 0, len(rules))
	for _, r := range rules {
		ids = append(ids, r.ID)
	}
	return ids
}

// oneAuditLine checks that recs is what a request with the expected action
// leaves: no line for "", else exactly one with that action and reason,
// which it returns (audited says whether there is one to check further).
func oneAuditLine(t *testing.T, recs []AuditRecord, wantAction, wantReason string) (rec AuditRecord, audited bool) {
	t.Helper()
	if wantAction == "" {
		if len(recs) != 0 {
			t.Fatalf("want no audit line, got %+v", recs)
		}
		return AuditRecord{}, false
	}
	if len(recs) != 1 {
		t.Fatalf("want one audit line, got %+v", recs)
	}
	rec = recs[0]
	if rec.Action != wantAction || rec.Reason != wantReason {
		t.Errorf("audit action/reason = %q/%q, want %q/%q", rec.Action, rec.Reason, wantAction, wantReason)
	}
	return rec, true
}
