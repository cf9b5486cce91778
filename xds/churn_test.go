package xds

import (
	"context"
	"runtime"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"

	"github.com/meshwaf/meshwaf/agentapi"
	"github.com/meshwaf/meshwaf/api/v1alpha1"
)

// Agents that connect and go away, 10,000 times, leave nothing behind: no
// goroutines, no per-stream state, no heap growth beyond noise.
func TestConnectDisconnectCyclesLeakNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 stream cycles take a few seconds")
	}
	s, conn := startServer(t)
	if err := s.Update(context.Background(), buildSnapshot(t, v1alpha1.ModePrevent, "shop.example.com", "api.example.com")); err != nil {
		t.Fatal(err)
	}
	client := discovery.NewAggregatedDiscoveryServiceClient(conn)
	cycle := func(i int) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		stream, err := client.DeltaAggregatedResources(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&discovery.DeltaDiscoveryRequest{Node: &corev3.Node{Id: "churn"}, TypeUrl: agentapi.HostPolicyTypeURL}); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 { // half ACK before leaving, half just leave
			stream.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: agentapi.HostPolicyTypeURL, ResponseNonce: resp.GetNonce()})
		}
	}
	for i := range 200 { // warm up pools and caches
		cycle(i)
	}
	settle := func() (goroutines int, heap uint64) {
		waitFor(t, func() bool {
			s.identities.mu.Lock()
			defer s.identities.mu.Unlock()
			return s.policies.StreamCount() == 0 && len(s.identities.streams) == 0
		})
		time.Sleep(100 * time.Millisecond)
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return runtime.NumGoroutine(), m.HeapInuse
	}
	goroutinesBefore, heapBefore := settle()
	for i := range 10_000 {
		cycle(i)
	}
	goroutinesAfter, heapAfter := settle()
	t.Logf("goroutines %d → %d, heap in use %d KiB → %d KiB", goroutinesBefore, goroutinesAfter, heapBefore>>10, heapAfter>>10)
	if goroutinesAfter > goroutinesBefore+5 {
		t.Errorf("goroutines grew from %d to %d over 10,000 cycles", goroutinesBefore, goroutinesAfter)
	}
	if heapAfter > heapBefore+4<<20 {
		t.Errorf("heap grew from %d KiB to %d KiB over 10,000 cycles", heapBefore>>10, heapAfter>>10)
	}
}
