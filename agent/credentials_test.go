package agent

import (
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/meshwaf/meshwaf/integration/devpki"
	"github.com/meshwaf/meshwaf/tlsfiles"

	"github.com/meshwaf/meshwaf/integration/fixtures"
)

// seen is what a TLS test server learnt about its last caller.
type seen struct {
	clientURI string
	auth      string
}

// tlsServer serves gRPC health over TLS, asking for (not requiring) client
// certificates from pki's CA, and records each caller.
func tlsServer(t *testing.T, pki *devpki.PKI, last *seen) string {
	t.Helper()
	pair, err := pki.Server("meshwaf-xds", "127.0.0.1", "meshwaf-xds.meshwaf-system.svc")
	if err != nil {
		t.Fatal(err)
	}
	creds, err := tlsfiles.Server{CertFile: pair.Cert, KeyFile: pair.Key, ClientCAFile: pki.CAFile, ClientAuth: tls.VerifyClientCertIfGiven}.Credentials()
	if err != nil {
		t.Fatal(err)
	}
	record := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		*last = seen{}
		if p, ok := peer.FromContext(ctx); ok {
			if info, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(info.State.PeerCertificates) > 0 && len(info.State.PeerCertificates[0].URIs) > 0 {
				last.clientURI = info.State.PeerCertificates[0].URIs[0].String()
			}
		}
		md, _ := metadata.FromIncomingContext(ctx)
		last.auth = strings.Join(md.Get("authorization"), ",")
		return h(ctx, req)
	}
	return fixtures.ServeHealth(t, grpc.Creds(creds), grpc.UnaryInterceptor(record))
}

func call(t *testing.T, addr string, auth ControlPlaneAuth) error {
	t.Helper()
	opts, err := auth.DialOptions()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
	return err
}

func TestControlPlaneAuth(t *testing.T) {
	pki, err := devpki.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	agentPair, err := pki.Agent("node-a")
	if err != nil {
		t.Fatal(err)
	}
	tokenPath := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenPath, []byte("first-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var last seen
	addr := tlsServer(t, pki, &last)

	if err := call(t, addr, ControlPlaneAuth{CAFile: pki.CAFile, CertFile: agentPair.Cert, KeyFile: agentPair.Key}); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(last.clientURI, "spiffe://") || !strings.HasSuffix(last.clientURI, "/agent/node-a") {
		t.Fatalf("server saw client certificate %q, want the agent's", last.clientURI)
	}

	if err := call(t, addr, ControlPlaneAuth{CAFile: pki.CAFile, TokenFile: tokenPath}); err != nil {
		t.Fatal(err)
	}
	if last.auth != "Bearer first-token" {
		t.Fatalf("server saw authorization %q", last.auth)
	}
	// A rotated token is sent on the next call without a restart.
	if err := os.WriteFile(tokenPath, []byte("second-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := call(t, addr, ControlPlaneAuth{CAFile: pki.CAFile, TokenFile: tokenPath}); err != nil {
		t.Fatal(err)
	}
	if last.auth != "Bearer second-token" {
		t.Fatalf("after rotation the server saw %q", last.auth)
	}

	// A control plane whose certificate another CA signed is refused.
	otherPKI, err := devpki.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := call(t, addr, ControlPlaneAuth{CAFile: otherPKI.CAFile}); err == nil {
		t.Fatal("a control plane with an untrusted certificate was accepted")
	}
}

func TestControlPlaneAuthRejectsBadSettings(t *testing.T) {
	pki, err := devpki.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(t.TempDir(), "empty")
	os.WriteFile(empty, nil, 0o600)
	for name, auth := range map[string]ControlPlaneAuth{
		"token without TLS":         {TokenFile: empty},
		"certificate without TLS":   {CertFile: "c", KeyFile: "k"},
		"certificate without a key": {CAFile: pki.CAFile, CertFile: "c"},
		"missing CA file":           {CAFile: filepath.Join(t.TempDir(), "nope")},
		"CA file without PEM":       {CAFile: empty},
		"empty token":               {CAFile: pki.CAFile, TokenFile: empty},
	} {
		if _, err := auth.DialOptions(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
