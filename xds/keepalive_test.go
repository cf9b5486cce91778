package xds

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meshwaf/meshwaf/agentapi"
	"github.com/meshwaf/meshwaf/api/v1alpha1"
)

// freezableProxy forwards one TCP connection until frozen; then it stops
// moving bytes but keeps both sockets open, as a peer behind a partition
// or on a powered-off node looks to the server.
type freezableProxy struct {
	lis    net.Listener
	frozen chan struct{}
	once   sync.Once
	mu     sync.Mutex
	conns  []net.Conn
}

func newFreezableProxy(t *testing.T, target string) *freezableProxy {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &freezableProxy{lis: lis, frozen: make(chan struct{})}
	go func() {
		for {
			client, err := lis.Accept()
			if err != nil {
				return
			}
			server, err := net.Dial("tcp", target)
			if err != nil {
				client.Close()
				return
			}
			p.mu.Lock()
			p.conns = append(p.conns, client, server)
			p.mu.Unlock()
			go p.pipe(client, server)
			go p.pipe(server, client)
		}
	}()
	t.Cleanup(func() {
		p.freeze()
		lis.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, c := range p.conns {
			c.Close()
		}
	})
	return p
}

func (p *freezableProxy) pipe(dst io.Writer, src io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		select {
		case <-p.frozen:
			return // drop what came and read no more
		default:
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *freezableProxy) freeze() { p.once.Do(func() { close(p.frozen) }) }

// An agent that vanishes without closing its connection is noticed by the
// server's keepalive: its stream is closed and it no longer counts.
func TestKeepaliveClosesStreamsOfVanishedAgents(t *testing.T) {
	s, err := New(Config{Listen: freeAddr(t), KeepaliveTime: time.Second, KeepaliveTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Start(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	waitListening(t, s.cfg.Listen)
	if err := s.Update(ctx, buildSnapshot(t, v1alpha1.ModePrevent, "shop.example.com")); err != nil {
		t.Fatal(err)
	}
	proxy := newFreezableProxy(t, s.cfg.Listen)
	conn, err := grpc.NewClient(proxy.lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	streamCtx, stopStream := context.WithCancel(ctx)
	defer stopStream()
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(streamCtx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discovery.DeltaDiscoveryRequest{Node: &corev3.Node{Id: "agent-1"}, TypeUrl: agentapi.HostPolicyTypeURL}); err != nil {
		t.Fatal(err)
	}
	resp := recvWithin(t, 5*time.Second, stream.Recv)
	if err := stream.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: agentapi.HostPolicyTypeURL, ResponseNonce: resp.GetNonce()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { a := s.Agents(); return len(a) == 1 && a[0].ACKs == 1 })

	proxy.freeze()
	frozen := time.Now()
	waitFor(t, func() bool { return s.policies.StreamCount() == 0 })
	t.Logf("a vanished agent's stream was closed %s after it went silent", time.Since(frozen).Round(100*time.Millisecond))
}
