package agent

import (
	"context"
	"strings"
	"testing"
	"time"

	coraza "github.com/corazawaf/coraza/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshwaf/meshwaf/agentapi"
)

func startClient(t *testing.T, addr string) (*policyClient, *Registry) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	reg := NewRegistry(sharedCompile)
	c := newPolicyClient(conn, &corev3.Node{Id: "node-1"}, reg, m, discardLogger(),
		backoff{min: 10 * time.Millisecond, max: 100 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
		conn.Close()
	})
	return c, reg
}

func policyVersionAt(reg *Registry, gateway, host string) string {
	if e := reg.Lookup([]string{gateway}, host); e != nil {
		return e.Policy.GetPolicyVersion()
	}
	return ""
}

func isACK(r *discoveryv3.DeltaDiscoveryRequest) bool {
	return r.GetResponseNonce() != "" && r.GetErrorDetail() == nil
}

func TestPolicyClientLifecycle(t *testing.T) {
	x := newTestXDS(t)
	a := testPolicy(testGateway, "a.example.com")
	x.set(t, a)
	c, reg := startClient(t, x.addr)

	// The first request subscribes to everything and names the node.
	first := x.waitRequest(t, "subscription", func(r *discoveryv3.DeltaDiscoveryRequest) bool {
		return r.GetResponseNonce() == ""
	})
	if got := first.GetResourceNamesSubscribe(); len(got) != 1 || got[0] != "*" || first.GetNode().GetId() != "node-1" {
		t.Fatalf("first request = %v", first)
	}
	select {
	case <-c.ready:
	case <-time.After(15 * time.Second):
		t.Fatal("never ready")
	}
	if v := policyVersionAt(reg, testGateway, "a.example.com"); v != "v1" {
		t.Fatalf("policy a version = %q, want v1", v)
	}
	x.waitRequest(t, "ACK of the first response", isACK)

	// A policy Coraza cannot compile is NACKed by name; the good one in the
	// same response applies and the bad one keeps its last good version.
	bad := testPolicy(testGateway, "a.example.com", func(p *agentapi.HostPolicy) {
		p.PolicyVersion = "v2"
		p.CustomRules = `SecRule ARGS "@rx (" "id:10002,phase:2,deny"`
	})
	x.set(t, bad)
	x.set(t, testPolicy(testGateway, "b.example.com"))
	nack := x.waitRequest(t, "NACK", func(r *discoveryv3.DeltaDiscoveryRequest) bool { return r.GetErrorDetail() != nil })
	msg := nack.GetErrorDetail().GetMessage()
	if !strings.Contains(msg, testGateway+"/a.example.com") || !strings.Contains(msg, "regexp") {
		t.Errorf("NACK message %q does not name the resource and the Coraza error", msg)
	}
	eventually(t, "policy b applied", func() bool { return policyVersionAt(reg, testGateway, "b.example.com") == "v1" })
	if v := policyVersionAt(reg, testGateway, "a.example.com"); v != "v1" {
		t.Errorf("after NACK policy a version = %q, want the last good v1", v)
	}

	// Removal reaches the registry.
	if err := x.cache.DeleteResource(agentapi.ResourceName(testGateway, "b.example.com")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "policy b removed", func() bool { return policyVersionAt(reg, testGateway, "b.example.com") == "" })

	// While the control plane is down the last policies keep serving; after
	// it returns the client resubscribes and picks up changes.
	x.stop()
	time.Sleep(50 * time.Millisecond)
	if v := policyVersionAt(reg, testGateway, "a.example.com"); v != "v1" {
		t.Errorf("while disconnected policy a version = %q, want v1", v)
	}
	x.set(t, testPolicy(testGateway, "a.example.com", func(p *agentapi.HostPolicy) { p.PolicyVersion = "v3" }))
	x.start(t, x.addr)
	eventually(t, "policy a v3 after reconnect", func() bool { return policyVersionAt(reg, testGateway, "a.example.com") == "v3" })
}

func TestPolicyClientReadyWithNoPolicies(t *testing.T) {
	x := newTestXDS(t)
	c, reg := startClient(t, x.addr)
	select {
	case <-c.ready:
	case <-time.After(15 * time.Second):
		t.Fatal("an empty policy set must still make the agent ready")
	}
	if n := len(reg.Entries()); n != 0 {
		t.Errorf("entries = %d, want 0", n)
	}
}

func TestPolicyClientRejectsMismatchedName(t *testing.T) {
	x := newTestXDS(t)
	p := testPolicy(testGateway, "a.example.com")
	if err := x.cache.UpdateResource(agentapi.ResourceName("other/gw", "a.example.com"), p); err != nil {
		t.Fatal(err)
	}
	_, reg := startClient(t, x.addr)
	nack := x.waitRequest(t, "NACK", func(r *discoveryv3.DeltaDiscoveryRequest) bool { return r.GetErrorDetail() != nil })
	if !strings.Contains(nack.GetErrorDetail().GetMessage(), "does not match its resource name") {
		t.Errorf("NACK = %q", nack.GetErrorDetail().GetMessage())
	}
	if n := len(reg.Entries()); n != 0 {
		t.Errorf("entries = %d, want 0", n)
	}
}

func TestApplyNACKsPanickingCompile(t *testing.T) {
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	reg := NewRegistry(func(string) (coraza.WAF, error) { panic("parser bug") })
	c := newPolicyClient(nil, &corev3.Node{Id: "n"}, reg, m, discardLogger(), backoff{})
	p := testPolicy(testGateway, "a.example.com")
	body, err := anypb.New(p)
	if err != nil {
		t.Fatal(err)
	}
	name := agentapi.ResourceName(testGateway, "a.example.com")
	req := c.apply(&discoveryv3.DeltaDiscoveryResponse{
		TypeUrl: agentapi.HostPolicyTypeURL, Nonce: "1",
		Resources: []*discoveryv3.Resource{{Name: name, Version: "1", Resource: body}},
	})
	if msg := req.GetErrorDetail().GetMessage(); !strings.Contains(msg, name) || !strings.Contains(msg, "parser bug") {
		t.Errorf("NACK = %q", msg)
	}
	if req.GetResponseNonce() != "1" {
		t.Errorf("nonce = %q", req.GetResponseNonce())
	}
}
