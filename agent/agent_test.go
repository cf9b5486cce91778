package agent

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/meshwaf/meshwaf/agentapi"
)

// startAgent runs a whole agent against xdsAddr and stops it at cleanup.
func startAgent(t *testing.T, xdsAddr string) (*Agent, *syncBuffer) {
	t.Helper()
	audit := &syncBuffer{}
	a, err := New(Config{
		XDSAddress: xdsAddr, NodeID: "node-1",
		ListenAddr: "127.0.0.1:0", HTTPListenAddr: "127.0.0.1:0",
		AuditLog: audit, Compile: sharedCompile,
		ReconnectMin: 10 * time.Millisecond, ReconnectMax: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Start: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("agent did not stop")
		}
	})
	return a, audit
}

// dialReady waits until a has compiled its first policy set and returns a
// connection to its gRPC server, closed at cleanup.
func dialReady(t *testing.T, a *Agent) *grpc.ClientConn {
	t.Helper()
	select {
	case <-a.Ready():
	case <-time.After(15 * time.Second):
		t.Fatal("agent never ready")
	}
	conn, err := grpc.NewClient(a.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func httpGet(t *testing.T, a *Agent, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + a.HTTPAddr().String() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestAgentEndToEnd(t *testing.T) {
	x := newTestXDS(t)
	x.set(t, testPolicy(testGateway, "shop.example.com"))
	x.set(t, testPolicy(testGateway, "*.example.com", withMode(agentapi.Mode_MODE_DETECT)))
	a, audit := startAgent(t, x.addr)
	conn := dialReady(t, a)
	authz := authv3.NewAuthorizationClient(conn)
	ctx := metadata.AppendToOutgoingContext(context.Background(),
		agentapi.GatewayMetadataKey, "other/gw", agentapi.GatewayMetadataKey, testGateway)

	tests := map[string]struct {
		host       string
		wantStatus int
	}{
		"exact host in prevent blocks":   {"shop.example.com", 403},
		"wildcard host in detect allows": {"blog.example.com", 200},
		"unknown host allows":            {"shop.example.org", 200},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			resp, err := authz.Check(ctx, httpCheck("GET", tt.host, sqliPath, nil, ""))
			if err != nil {
				t.Fatal(err)
			}
			if got := verdictOf(t, resp); got != tt.wantStatus {
				t.Errorf("status = %d, want %d", got, tt.wantStatus)
			}
		})
	}
	if n := len(audit.records(t)); n != 2 {
		t.Errorf("audit lines = %d, want 2 (one block, one detection)", n)
	}

	if code, body := httpGet(t, a, "/healthz"); code != 200 {
		t.Errorf("/healthz = %d %s", code, body)
	}
	if code, body := httpGet(t, a, "/readyz"); code != 200 {
		t.Errorf("/readyz = %d %s", code, body)
	}
	_, metrics := httpGet(t, a, "/metrics")
	for _, want := range []string{
		`meshwaf_agent_requests_total{gateway="istio-ingress/public",host="shop.example.com",verdict="blocked"} 1`,
		`meshwaf_agent_requests_total{gateway="istio-ingress/public",host="*.example.com",verdict="detected"} 1`,
		`meshwaf_agent_requests_total{gateway="(none)",host="(none)",verdict="no_policy"} 1`,
		`meshwaf_agent_rule_hits_total{rule_id="942100"} 2`,
		`meshwaf_agent_policy_info{gateway="istio-ingress/public",host="shop.example.com",mode="Prevent",policy="shop/shop",policy_version="v1"} 1`,
		"meshwaf_agent_policies 2",
		"meshwaf_agent_wafs 2",
		"meshwaf_agent_xds_connected 1",
		`meshwaf_agent_inspection_duration_seconds_count{protocol="ext_authz"} 2`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	_, body := httpGet(t, a, "/debug/policies")
	var got struct{ Policies []agentapi.PolicyView }
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("/debug/policies %q: %v", body, err)
	}
	want := []agentapi.PolicyView{
		{Name: testGateway + "/*.example.com", Gateway: testGateway, Host: "*.example.com", Policy: "shop/shop", PolicyVersion: "v1", Mode: "Detect"},
		{Name: testGateway + "/shop.example.com", Gateway: testGateway, Host: "shop.example.com", Policy: "shop/shop", PolicyVersion: "v1", Mode: "Prevent"},
	}
	if len(got.Policies) != len(want) {
		t.Fatalf("/debug/policies = %+v, want %+v", got.Policies, want)
	}
	for i := range want {
		if got.Policies[i] != want[i] {
			t.Errorf("/debug/policies[%d] = %+v, want %+v", i, got.Policies[i], want[i])
		}
	}
}

func TestAgentNotReadyWithoutControlPlane(t *testing.T) {
	// Nothing listens on port 1, so the first policy set never arrives.
	a, _ := startAgent(t, "127.0.0.1:1")
	if code, _ := httpGet(t, a, "/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz = %d, want 503", code)
	}
	if code, _ := httpGet(t, a, "/healthz"); code != 200 {
		t.Errorf("/healthz = %d, want 200", code)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	tests := map[string]Config{
		"missing xds address": {NodeID: "n", ListenAddr: "127.0.0.1:0", HTTPListenAddr: "127.0.0.1:0"},
		"missing node id":     {XDSAddress: "127.0.0.1:1", ListenAddr: "127.0.0.1:0", HTTPListenAddr: "127.0.0.1:0"},
		"bad listen address":  {XDSAddress: "127.0.0.1:1", NodeID: "n", ListenAddr: "256.0.0.1:x", HTTPListenAddr: "127.0.0.1:0"},
	}
	for name, cfg := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := New(cfg); err == nil {
				t.Error("New succeeded")
			}
		})
	}
}

// Go's profiles are served only when asked for: they cost CPU while
// recorded and show internals.
func TestProfilingEndpointOnlyWhenEnabled(t *testing.T) {
	tests := map[string]struct {
		profiling bool
		want      int
	}{
		"off by default":  {profiling: false, want: http.StatusNotFound},
		"on with --pprof": {profiling: true, want: http.StatusOK},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			a := &Agent{cfg: Config{Profiling: tt.profiling}, reg: NewRegistry(nil), registry: prometheus.NewRegistry()}
			for _, path := range []string{"/debug/pprof/", "/debug/pprof/goroutine?debug=1"} {
				rec := httptest.NewRecorder()
				a.httpHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
				if rec.Code != tt.want {
					t.Errorf("GET %s: status %d, want %d", path, rec.Code, tt.want)
				}
			}
		})
	}
}
