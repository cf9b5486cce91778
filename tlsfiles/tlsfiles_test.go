package tlsfiles

import (
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"

	"github.com/meshwaf/meshwaf/integration/devpki"

	"github.com/meshwaf/meshwaf/integration/fixtures"
)

const serverName = "meshwaf-xds.meshwaf-system.svc"

// serve runs gRPC health with creds and returns its address; each call's
// client certificate serial is sent on clientSerials.
func serve(t *testing.T, creds credentials.TransportCredentials, clientSerials chan<- string) string {
	t.Helper()
	record := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if p, ok := peer.FromContext(ctx); ok && clientSerials != nil {
			if info, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(info.State.PeerCertificates) > 0 {
				clientSerials <- info.State.PeerCertificates[0].SerialNumber.Text(16)
			}
		}
		return h(ctx, req)
	}
	return fixtures.ServeHealth(t, grpc.Creds(creds), grpc.UnaryInterceptor(record))
}

// call makes one call on a new connection, so a new TLS handshake.
func call(t *testing.T, addr string, creds credentials.TransportCredentials) error {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
	return err
}

func newCA(t *testing.T, dir string) *devpki.PKI {
	t.Helper()
	ca, err := devpki.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// install renames the pair's files to cert and key, as a Secret update
// replaces files whole.
func install(t *testing.T, pair devpki.Pair, cert, key string) {
	t.Helper()
	for from, to := range map[string]string{pair.Cert: cert, pair.Key: key} {
		if err := os.Rename(from, to); err != nil {
			t.Fatal(err)
		}
	}
}

func copyTo(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to+".tmp", b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(to+".tmp", to); err != nil {
		t.Fatal(err)
	}
}

// issued takes devpki's (pair, error) and fails the test on the error.
func issued(t *testing.T) func(devpki.Pair, error) devpki.Pair {
	return func(pair devpki.Pair, err error) devpki.Pair {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return pair
	}
}

// The control plane's credentials, made once, serve each new connection
// with the serving certificate and client CA the files hold then.
func TestServerReadsFilesForEveryConnection(t *testing.T) {
	dir := t.TempDir()
	oldCA, newCA := newCA(t, filepath.Join(dir, "old")), newCA(t, filepath.Join(dir, "new"))
	cert, key, clientCA := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "client-ca.crt")
	install(t, issued(t)(oldCA.Server("meshwaf-xds", serverName)), cert, key)
	copyTo(t, oldCA.CAFile, clientCA)

	creds, err := Server{CertFile: cert, KeyFile: key, ClientCAFile: clientCA, ClientAuth: tls.RequireAndVerifyClientCert}.Credentials()
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, creds, nil)
	client := func(ca *devpki.PKI, clientOf *devpki.PKI) credentials.TransportCredentials {
		pair := issued(t)(clientOf.Agent("node-1"))
		c, err := Client{CAFile: ca.CAFile, ServerName: serverName, CertFile: pair.Cert, KeyFile: pair.Key}.Credentials()
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if err := call(t, addr, client(oldCA, oldCA)); err != nil {
		t.Fatalf("before the rotation: %v", err)
	}

	install(t, issued(t)(newCA.Server("meshwaf-xds", serverName)), cert, key)
	copyTo(t, newCA.CAFile, clientCA)
	if err := call(t, addr, client(newCA, newCA)); err != nil {
		t.Errorf("a client of the new CA after the rotation: %v", err)
	}
	if err := call(t, addr, client(oldCA, newCA)); err == nil {
		t.Error("a client trusting only the old CA was served: the server kept its old certificate")
	}
	if err := call(t, addr, client(newCA, oldCA)); err == nil {
		t.Error("a client certificate of the old CA was accepted: the server kept its old client CA")
	}
}

// The agent's credentials, made once, verify each new connection with the
// CA bundle the file holds then and present the client certificate the
// files hold then.
func TestClientReadsFilesForEveryConnection(t *testing.T) {
	dir := t.TempDir()
	oldCA, newCA := newCA(t, filepath.Join(dir, "old")), newCA(t, filepath.Join(dir, "new"))
	server := issued(t)(newCA.Server("meshwaf-xds", serverName))
	serverCert, err := tls.LoadX509KeyPair(server.Cert, server.Key)
	if err != nil {
		t.Fatal(err)
	}
	clientCAs, err := Pool(oldCA.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	seen := make(chan string, 4)
	addr := serve(t, credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{serverCert},
		ClientCAs: clientCAs, ClientAuth: tls.RequireAndVerifyClientCert}), seen)

	bundle, cert, key := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	copyTo(t, oldCA.CAFile, bundle)
	install(t, issued(t)(oldCA.Agent("node-1")), cert, key)
	creds, err := Client{CAFile: bundle, ServerName: serverName, CertFile: cert, KeyFile: key}.Credentials()
	if err != nil {
		t.Fatal(err)
	}
	if err := call(t, addr, creds); err == nil {
		t.Fatal("a server of a CA the bundle does not hold was accepted")
	}

	copyTo(t, newCA.CAFile, bundle)
	if err := call(t, addr, creds); err != nil {
		t.Fatalf("after the new CA was installed: %v", err)
	}
	first := <-seen
	renewed := issued(t)(oldCA.Agent("node-1"))
	install(t, renewed, cert, key)
	if err := call(t, addr, creds); err != nil {
		t.Fatalf("after the client certificate was renewed: %v", err)
	}
	if got := <-seen; got == first {
		t.Errorf("the server saw client certificate %s again, want the renewed one", got)
	}
}

func TestCredentialsCheckFilesAtStart(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, dir)
	pair := issued(t)(ca.Server("meshwaf-xds", serverName))
	other := issued(t)(ca.Server("other", serverName))
	notPEM := filepath.Join(dir, "empty.crt")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, get := range map[string]func() error{
		"missing serving certificate": func() error { _, err := Server{CertFile: dir + "/none", KeyFile: pair.Key}.Credentials(); return err },
		"key of another certificate":  func() error { _, err := Server{CertFile: pair.Cert, KeyFile: other.Key}.Credentials(); return err },
		"client CA without PEM": func() error {
			_, err := Server{CertFile: pair.Cert, KeyFile: pair.Key, ClientCAFile: notPEM}.Credentials()
			return err
		},
		"missing CA bundle":        func() error { _, err := Client{CAFile: dir + "/none"}.Credentials(); return err },
		"client certificate alone": func() error { _, err := Client{CAFile: ca.CAFile, CertFile: pair.Cert}.Credentials(); return err },
		"client key of another": func() error {
			_, err := Client{CAFile: ca.CAFile, CertFile: pair.Cert, KeyFile: other.Key}.Credentials()
			return err
		},
	} {
		t.Run(name, func(t *testing.T) {
			if err := get(); err == nil {
				t.Error("no error")
			}
		})
	}
}

func TestServingCertificateReadsFilesForEveryHandshake(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, dir)
	cert, key := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	install(t, issued(t)(ca.Server("webhook", serverName)), cert, key)
	get, err := ServingCertificate(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	serial := func() string {
		t.Helper()
		c, err := get(nil)
		if err != nil {
			t.Fatal(err)
		}
		return c.Leaf.SerialNumber.Text(16)
	}
	first := serial()
	install(t, issued(t)(ca.Server("webhook", serverName)), cert, key)
	if second := serial(); second == first {
		t.Errorf("serial %s before and after the renewal", first)
	}
	if _, err := ServingCertificate(cert, filepath.Join(dir, "webhook.key")); err == nil {
		t.Error("a missing key was accepted at start")
	}
}
