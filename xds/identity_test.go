package xds

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	extensionservice "github.com/envoyproxy/go-control-plane/envoy/service/extension/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/meshwaf/meshwaf/agentapi"
	"github.com/meshwaf/meshwaf/api/v1alpha1"
	"github.com/meshwaf/meshwaf/integration/devpki"
	"github.com/meshwaf/meshwaf/snapshot"
)

// mtlsServer runs a Server requiring client certificates from pki's CA.
func mtlsServer(t *testing.T, pki *devpki.PKI) *Server {
	t.Helper()
	serverPair, err := pki.Server("meshwaf-xds", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(serverPair.Cert, serverPair.Key)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{
		Listen: freeAddr(t),
		Credentials: credentials.NewTLS(&tls.Config{
			Certificates: []tls.Certificate{cert},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    certPool(t, pki.CAFile),
			MinVersion:   tls.VersionTLS13,
		}),
		Authenticator: CertificateAuthenticator{},
	})
	if err != nil {
		t.Fatal(err)
	}
	runServer(t, s)
	if err := s.Update(context.Background(), buildSnapshot(t, v1alpha1.ModePrevent, "shop.example.com")); err != nil {
		t.Fatal(err)
	}
	return s
}

func runServer(t *testing.T, s *Server) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	waitListening(t, s.cfg.Listen)
}

func certPool(t *testing.T, caFile string) *x509.CertPool {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return pool
}

// dial connects with the client certificate pair, or none when pair is nil.
func dial(t *testing.T, s *Server, caFile string, pair *devpki.Pair) *grpc.ClientConn {
	t.Helper()
	cfg := &tls.Config{RootCAs: certPool(t, caFile), MinVersion: tls.VersionTLS13}
	if pair != nil {
		cert, err := tls.LoadX509KeyPair(pair.Cert, pair.Key)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	conn, err := grpc.NewClient(s.cfg.Listen, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// subscribe opens a host policy stream as node and returns the first
// answer's error (nil when host policies arrived).
func subscribe(t *testing.T, conn *grpc.ClientConn, node string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		return err
	}
	if err := stream.Send(&discovery.DeltaDiscoveryRequest{Node: &corev3.Node{Id: node}, TypeUrl: agentapi.HostPolicyTypeURL}); err != nil {
		return err
	}
	resp, err := stream.Recv()
	if err == nil && len(resp.GetResources()) == 0 {
		t.Fatal("an accepted agent got no host policies")
	}
	return err
}

func TestMutualTLSIdentity(t *testing.T) {
	pki, err := devpki.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := mtlsServer(t, pki)
	agentA, err := pki.Agent("node-a")
	if err != nil {
		t.Fatal(err)
	}
	gateway, err := pki.Gateway("ingress")
	if err != nil {
		t.Fatal(err)
	}
	otherPKI, err := devpki.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := otherPKI.Agent("node-a")
	if err != nil {
		t.Fatal(err)
	}

	tests := map[string]struct {
		pair     *devpki.Pair
		node     string
		wantCode codes.Code
	}{
		"agent with its own node":                  {&agentA, "node-a", codes.OK},
		"agent claiming another node":              {&agentA, "node-b", codes.PermissionDenied},
		"gateway certificate asking host policies": {&gateway, "node-a", codes.PermissionDenied},
		"no client certificate":                    {nil, "node-a", codes.Unavailable},
		"certificate from another CA":              {&stranger, "node-a", codes.Unavailable},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := subscribe(t, dial(t, s, pki.CAFile, tc.pair), tc.node)
			if got := status.Code(err); got != tc.wantCode {
				t.Fatalf("code %s (%v), want %s", got, err, tc.wantCode)
			}
		})
	}

	// A gateway certificate may read its ECDS configuration.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ecds, err := extensionservice.NewExtensionConfigDiscoveryServiceClient(dial(t, s, pki.CAFile, &gateway)).StreamExtensionConfigs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := ecds.Send(&discovery.DiscoveryRequest{Node: gatewayNode(t), TypeUrl: resource.ExtensionConfigType, ResourceNames: []string{snapshot.FilterName}}); err != nil {
		t.Fatal(err)
	}
	if resp, err := ecds.Recv(); err != nil || len(resp.GetResources()) != 1 {
		t.Fatalf("gateway ECDS: %v, %d resources", err, len(resp.GetResources()))
	}
}

func TestNodeIDIsPinnedPerStream(t *testing.T) {
	s, conn := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Update(ctx, buildSnapshot(t, v1alpha1.ModePrevent, "shop.example.com")); err != nil {
		t.Fatal(err)
	}
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discovery.DeltaDiscoveryRequest{Node: &corev3.Node{Id: "node-a"}, TypeUrl: agentapi.HostPolicyTypeURL}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	// The ACK claims another node: the stream must be closed.
	if err := stream.Send(&discovery.DeltaDiscoveryRequest{
		Node: &corev3.Node{Id: "node-b"}, TypeUrl: agentapi.HostPolicyTypeURL, ResponseNonce: resp.GetNonce(),
	}); err != nil {
		t.Fatal(err)
	}
	_, err = stream.Recv()
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("stream after a node id change: %v, want InvalidArgument", err)
	}
}
