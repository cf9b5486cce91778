package agent

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"

	"github.com/meshwaf/meshwaf/agentapi"
)

// testXDS is go-control-plane's real server over a LinearCache of host
// policies, recording every delta request it receives.
type testXDS struct {
	cache *cachev3.LinearCache
	addr  string

	mu       sync.Mutex
	requests []*discoveryv3.DeltaDiscoveryRequest
	srv      *grpc.Server
	done     chan struct{}
}

func newTestXDS(t *testing.T) *testXDS {
	t.Helper()
	x := &testXDS{cache: cachev3.NewLinearCache(agentapi.HostPolicyTypeURL)}
	x.start(t, "127.0.0.1:0")
	t.Cleanup(x.stop)
	return x
}

// start serves on addr; restarting on the previous address lets tests
// observe a reconnect to the same control plane.
func (x *testXDS) start(t *testing.T, addr string) {
	t.Helper()
	var lis net.Listener
	var err error
	for range 50 { // the old socket may linger briefly after a restart
		if lis, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	x.addr = lis.Addr().String()
	cb := serverv3.CallbackFuncs{StreamDeltaRequestFunc: func(_ int64, req *discoveryv3.DeltaDiscoveryRequest) error {
		x.mu.Lock()
		x.requests = append(x.requests, req)
		x.mu.Unlock()
		return nil
	}}
	ctx, cancel := context.WithCancel(context.Background())
	xs := serverv3.NewServer(ctx, x.cache, cb)
	srv := grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(srv, xs)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer cancel()
		_ = srv.Serve(lis)
	}()
	x.mu.Lock()
	x.srv, x.done = srv, done
	x.mu.Unlock()
}

func (x *testXDS) stop() {
	x.mu.Lock()
	srv, done := x.srv, x.done
	x.srv = nil
	x.mu.Unlock()
	if srv != nil {
		srv.Stop()
		<-done
	}
}

// waitRequest waits for a request matching pred and returns it.
func (x *testXDS) waitRequest(t *testing.T, what string, pred func(*discoveryv3.DeltaDiscoveryRequest) bool) *discoveryv3.DeltaDiscoveryRequest {
	t.Helper()
	var found *discoveryv3.DeltaDiscoveryRequest
	eventually(t, what, func() bool {
		x.mu.Lock()
		defer x.mu.Unlock()
		for _, r := range x.requests {
			if pred(r) {
				found = r
				return true
			}
		}
		return false
	})
	return found
}

func (x *testXDS) set(t *testing.T, p *agentapi.HostPolicy) {
	t.Helper()
	if err := x.cache.UpdateResource(agentapi.ResourceName(p.GetGateway(), p.GetHost()), p); err != nil {
		t.Fatal(err)
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
