package istio

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
	"time"

	"github.com/meshwaf/meshwaf/integration/kube"
)

// istiod runs out of cluster against the real API server as a proxy needs
// it: it publishes its root certificate into every namespace (the
// ConfigMap istio-ca-root-cert a gateway pod mounts), and serves xDS on
// its TLS port with a certificate that root verifies for the loopback
// address proxies dial.
func TestIstiodServesProxiesOutOfCluster(t *testing.T) {
	c := kube.Start(t, kube.Options{})
	d := StartIstiod(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const gatewayNamespace = "istio-ingress"
	if err := c.EnsureNamespace(ctx, gatewayNamespace); err != nil {
		t.Fatal(err)
	}
	root, err := waitConfigMap(ctx, c, gatewayNamespace, "istio-ca-root-cert")
	if err != nil {
		t.Fatalf("istiod wrote no root certificate: %v", err)
	}
	rootPEM := root["root-cert.pem"]
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(rootPEM)) {
		t.Fatalf("istio-ca-root-cert holds no certificate: %q", rootPEM)
	}
	host, _, _ := net.SplitHostPort(d.XDSAddr)
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", d.XDSAddr, &tls.Config{
		RootCAs: roots, ServerName: host, NextProtos: []string{"h2"},
	})
	if err != nil {
		t.Fatalf("istiod's xDS port %s with its published root: %v", d.XDSAddr, err)
	}
	defer conn.Close()
	leaf := conn.ConnectionState().PeerCertificates[0]
	if len(leaf.IPAddresses) == 0 || leaf.IPAddresses[0].String() != host {
		t.Errorf("istiod's serving certificate has IP SANs %v, want %s", leaf.IPAddresses, host)
	}
}
