package agent

import (
	"context"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/metadata"

	"github.com/meshwaf/meshwaf/agentapi"
)

// Told to stop with a drain delay, the agent fails /readyz at once (its
// endpoint then leaves the gateways' load balancing) and keeps answering
// Checks with verdicts until the delay has passed; only then does it stop.
func TestDrainKeepsServingWhileNotReady(t *testing.T) {
	x := newTestXDS(t)
	x.set(t, testPolicy(testGateway, "shop.example.com"))
	const drain = 600 * time.Millisecond
	a, err := New(Config{XDSAddress: x.addr, NodeID: "node-1", ListenAddr: "127.0.0.1:0", HTTPListenAddr: "127.0.0.1:0",
		AuditLog: &syncBuffer{}, Compile: sharedCompile, DrainDelay: drain})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Start(ctx) }()
	defer cancel()
	conn := dialReady(t, a)
	authz := authv3.NewAuthorizationClient(conn)
	callCtx := metadata.AppendToOutgoingContext(context.Background(), agentapi.GatewayMetadataKey, testGateway)

	stopped := time.Now()
	cancel()
	time.Sleep(100 * time.Millisecond)
	if code, body := httpGet(t, a, "/readyz"); code != 503 {
		t.Errorf("/readyz while draining = %d %q, want 503", code, body)
	}
	for time.Since(stopped) < drain-200*time.Millisecond {
		resp, err := authz.Check(callCtx, httpCheck("GET", "shop.example.com", sqliPath, nil, ""))
		if err != nil {
			t.Fatalf("Check %s after stop, within the drain delay: %v", time.Since(stopped).Round(time.Millisecond), err)
		}
		if got := verdictOf(t, resp); got != 403 {
			t.Fatalf("Check while draining: status %d, want 403", got)
		}
		time.Sleep(50 * time.Millisecond)
	}
	select {
	case err := <-done:
		if took := time.Since(stopped); err != nil || took < drain {
			t.Errorf("Start returned %v after %s, want nil after at least the drain delay %s", err, took, drain)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("agent did not stop after draining")
	}
}
