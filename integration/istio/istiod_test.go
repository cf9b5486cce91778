package istio

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

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
	cs, err := c.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	var rootPEM string
	for rootPEM == "" {
		cm, err := cs.CoreV1().ConfigMaps(gatewayNamespace).Get(ctx, "istio-ca-root-cert", metav1.GetOptions{})
		if err == nil {
			rootPEM = cm.Data["root-cert.pem"]
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("istiod wrote no istio-ca-root-cert into %s: %v", gatewayNamespace, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
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
