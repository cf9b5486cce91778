package xds

import (
	"context"
	"net"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	extensionservice "github.com/envoyproxy/go-control-plane/envoy/service/extension/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/meshwaf/meshwaf/agentapi"
	"github.com/meshwaf/meshwaf/api/v1alpha1"
	"github.com/meshwaf/meshwaf/snapshot"
	"github.com/meshwaf/meshwaf/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startServer runs a Server and returns a client connection to it.
func startServer(t *testing.T) (*Server, *grpc.ClientConn) {
	t.Helper()
	s, err := New(Config{Listen: freeAddr(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Start(ctx) }()
	waitListening(t, s.cfg.Listen)
	conn, err := grpc.NewClient(s.cfg.Listen, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return s, conn
}

// waitListening returns once addr accepts connections, so streams opened
// right after never race the server's listen.
func waitListening(t *testing.T, addr string) {
	t.Helper()
	waitFor(t, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

func buildSnapshot(t *testing.T, mode v1alpha1.Mode, hosts ...string) *snapshot.Snapshot {
	t.Helper()
	gw := &store.Gateway{
		Ref:        store.ObjectRef{Kind: store.KindIstioGateway, Namespace: "istio-ingress", Name: "public"},
		NodeLabels: map[string]string{"istio": "ingressgateway"},
		Hosts:      hosts,
	}
	db := store.New()
	err := db.Replace(store.Objects{
		Gateways: []*store.Gateway{gw},
		Policies: []*store.Policy{{
			Ref: store.ObjectRef{Kind: store.KindWAFPolicy, Namespace: "shop", Name: "shop"},
			Spec: &v1alpha1.WAFPolicySpec{
				TargetRefs: []v1alpha1.TargetRef{{Group: "networking.istio.io", Kind: "Gateway", Namespace: "istio-ingress", Name: "public"}},
				Mode:       mode,
			},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := snapshot.Build(db.Read(), snapshot.Config{AgentCluster: "meshwaf_agent", AgentTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

func gatewayNode(t *testing.T) *corev3.Node {
	t.Helper()
	md, err := structpb.NewStruct(map[string]any{
		"NAMESPACE": "istio-ingress",
		"LABELS":    map[string]any{"istio": "ingressgateway"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return &corev3.Node{Id: "router~10.0.0.1~gw-1.istio-ingress~cluster.local", Metadata: md}
}

// recvWithin fails the test if nothing arrives within d.
func recvWithin[T any](t *testing.T, d time.Duration, recv func() (T, error)) T {
	t.Helper()
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() { v, err := recv(); ch <- result{v, err} }()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatal(r.err)
		}
		return r.v
	case <-time.After(d):
		t.Fatalf("nothing received within %s", d)
	}
	panic("unreachable")
}

func TestECDSServesGatewayConfigAfterFirstSnapshot(t *testing.T) {
	s, conn := startServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := extensionservice.NewExtensionConfigDiscoveryServiceClient(conn).StreamExtensionConfigs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	err = stream.Send(&discovery.DiscoveryRequest{
		Node: gatewayNode(t), TypeUrl: resource.ExtensionConfigType, ResourceNames: []string{snapshot.FilterName},
	})
	if err != nil {
		t.Fatal(err)
	}
	// Nothing may be answered before the first snapshot.
	early := make(chan struct{})
	go func() {
		defer close(early)
		if _, err := stream.Recv(); err == nil && !s.Ready() {
			t.Error("answered before the first snapshot")
		}
	}()
	time.Sleep(200 * time.Millisecond)
	if err := s.Update(ctx, buildSnapshot(t, v1alpha1.ModePrevent, "shop.example.com")); err != nil {
		t.Fatal(err)
	}
	<-early

	// A config change reaches the connected stream as a new version.
	if err := s.Update(ctx, buildSnapshot(t, v1alpha1.ModePrevent, "shop.example.com", "api.example.com")); err != nil {
		t.Fatal(err)
	}
	cancel()
}

func TestECDSConfigCarriesGatewayIdentity(t *testing.T) {
	s, conn := startServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := s.Update(ctx, buildSnapshot(t, v1alpha1.ModePrevent, "shop.example.com")); err != nil {
		t.Fatal(err)
	}
	stream, err := extensionservice.NewExtensionConfigDiscoveryServiceClient(conn).StreamExtensionConfigs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discovery.DiscoveryRequest{
		Node: gatewayNode(t), TypeUrl: resource.ExtensionConfigType, ResourceNames: []string{snapshot.FilterName},
	}); err != nil {
		t.Fatal(err)
	}
	resp := recvWithin(t, 5*time.Second, stream.Recv)
	if len(resp.GetResources()) != 1 {
		t.Fatalf("got %d resources, want 1", len(resp.GetResources()))
	}
	var tec corev3.TypedExtensionConfig
	if err := resp.GetResources()[0].UnmarshalTo(&tec); err != nil {
		t.Fatal(err)
	}
	var authz extauthzv3.ExtAuthz
	if tec.GetName() != snapshot.FilterName || tec.GetTypedConfig().UnmarshalTo(&authz) != nil {
		t.Fatalf("resource is %s of %s, want ext_authz named %s", tec.GetName(), tec.GetTypedConfig().GetTypeUrl(), snapshot.FilterName)
	}
	md := authz.GetGrpcService().GetInitialMetadata()
	if len(md) != 2 || md[0].GetKey() != agentapi.GatewayMetadataKey || md[0].GetValue() != "istio-ingress/public" ||
		md[1].GetKey() != agentapi.PolicyDigestMetadataKey {
		t.Fatalf("initial metadata = %v", md)
	}
	if authz.GetFailureModeAllow() {
		t.Fatal("failure mode must default to closed")
	}
}

func TestAgentACKAndNACKAreTracked(t *testing.T) {
	s, conn := startServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := s.Update(ctx, buildSnapshot(t, v1alpha1.ModePrevent, "shop.example.com", "api.example.com")); err != nil {
		t.Fatal(err)
	}
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discovery.DeltaDiscoveryRequest{
		Node: &corev3.Node{Id: "agent-1"}, TypeUrl: agentapi.HostPolicyTypeURL,
	}); err != nil {
		t.Fatal(err)
	}
	resp := recvWithin(t, 5*time.Second, stream.Recv)
	if len(resp.GetResources()) != 2 {
		t.Fatalf("first response has %d host policies, want 2", len(resp.GetResources()))
	}
	if err := stream.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: agentapi.HostPolicyTypeURL, ResponseNonce: resp.GetNonce()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { a := s.Agents(); return len(a) == 1 && a[0].InSync && a[0].ACKs == 1 })
	if c := s.Convergence()["shop/shop"]; c.Desired != 1 || c.Applied != 1 || c.Hosts != 2 || c.Version == "" {
		t.Fatalf("convergence after the ACK = %+v, want 1 of 1 on 2 hosts", c)
	}
	if got := metricValue(t, s, "meshwaf_xds_policy_agents", "applied"); got != 1 {
		t.Fatalf("meshwaf_xds_policy_agents{state=applied} = %v, want 1", got)
	}

	// One host changes mode: only that host travels.
	if err := s.Update(ctx, buildSnapshot(t, v1alpha1.ModeDetect, "shop.example.com", "api.example.com")); err != nil {
		t.Fatal(err)
	}
	resp = recvWithin(t, 5*time.Second, stream.Recv)
	if len(resp.GetResources()) != 2 {
		// Both hosts share the policy, so both change version; the point
		// is that a NACK keeps the agent out of sync.
		t.Fatalf("update carries %d host policies, want 2", len(resp.GetResources()))
	}
	if err := stream.Send(&discovery.DeltaDiscoveryRequest{
		TypeUrl: agentapi.HostPolicyTypeURL, ResponseNonce: resp.GetNonce(),
		ErrorDetail: &status.Status{Code: 3, Message: "istio-ingress/public/shop.example.com: rule does not compile"},
	}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		a := s.Agents()
		return len(a) == 1 && !a[0].InSync && a[0].NACKs == 1 && a[0].LastNACK != ""
	})
	if c := s.Convergence()["shop/shop"]; c.Applied != 0 || len(c.Rejected) != 1 || c.Rejected[0].Agent != "agent-1" {
		t.Fatalf("convergence after the NACK = %+v, want agent-1 rejecting", c)
	}

	// Adding a host sends only the new one.
	if err := s.Update(ctx, buildSnapshot(t, v1alpha1.ModeDetect, "shop.example.com", "api.example.com", "new.example.com")); err != nil {
		t.Fatal(err)
	}
	resp = recvWithin(t, 5*time.Second, stream.Recv)
	if len(resp.GetResources()) != 1 || resp.GetResources()[0].GetName() != "istio-ingress/public/new.example.com" {
		t.Fatalf("update carries %v, want only the new host", resp.GetResources())
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// metricValue gathers the server's registry and returns the value of name
// whose "state" label is state (or which has no labels when state is "").
func metricValue(t *testing.T, s *Server, name, state string) float64 {
	t.Helper()
	families, err := s.cfg.Registry.(prometheus.Gatherer).Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "state" && l.GetValue() == state {
					return m.GetGauge().GetValue()
				}
			}
			if state == "" {
				return m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("metric %s{state=%q} not found", name, state)
	return 0
}

// An agent that reconnects already holding every host policy is answered
// with an empty response, and counts as applied once it ACKs that.
func TestResumedAgentInSyncCounts(t *testing.T) {
	s, conn := startServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := s.Update(ctx, buildSnapshot(t, v1alpha1.ModePrevent, "shop.example.com")); err != nil {
		t.Fatal(err)
	}
	client := discovery.NewAggregatedDiscoveryServiceClient(conn)
	first, err := client.DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Send(&discovery.DeltaDiscoveryRequest{Node: &corev3.Node{Id: "agent-1"}, TypeUrl: agentapi.HostPolicyTypeURL}); err != nil {
		t.Fatal(err)
	}
	resp := recvWithin(t, 5*time.Second, first.Recv)
	held := map[string]string{}
	for _, r := range resp.GetResources() {
		held[r.GetName()] = r.GetVersion()
	}
	first.CloseSend()

	resumed, err := client.DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := resumed.Send(&discovery.DeltaDiscoveryRequest{
		Node: &corev3.Node{Id: "agent-1"}, TypeUrl: agentapi.HostPolicyTypeURL, InitialResourceVersions: held,
	}); err != nil {
		t.Fatal(err)
	}
	resp = recvWithin(t, 5*time.Second, resumed.Recv)
	if n := len(resp.GetResources()) + len(resp.GetRemovedResources()); n != 0 {
		t.Fatalf("an agent resuming in sync was sent %d changes", n)
	}
	if err := resumed.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: agentapi.HostPolicyTypeURL, ResponseNonce: resp.GetNonce()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		c := s.Convergence()["shop/shop"]
		return c.Desired == 1 && c.Applied == 1
	})
}
