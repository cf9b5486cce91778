package integration

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/meshwaf/meshwaf/integration/stack"
)

// certificateReloadTimeout bounds how long Envoy takes to load a renewed
// client certificate after the Secret's files were swapped (it reacts to
// the move of ..data at once; the margin is for a busy machine).
const certificateReloadTimeout = 5 * time.Second

// Certificates renew and CAs rotate without restarting the data plane. A
// gateway's client certificate for the control plane is renewed: when its
// Secret's files are swapped the way the kubelet swaps them (a new ..data
// link moved into the mounted folder), Envoy loads the new certificate
// through file-based SDS (deploy/istio/bootstrap-override.yaml). Then the CA
// rotates: every party's bundle gains a new CA (Envoy loads it the same
// way; the agent and the control plane read theirs for every connection,
// tlsfiles) and the control plane's serving certificate is reissued by the
// new CA alone. After a control plane restart the same Envoy and the same
// agent must complete new TLS handshakes against that certificate, which
// only the reloaded bundles verify, and be served again, while Envoy keeps
// blocking attacks.
func TestDataPlaneReloadsRenewedCertificateAndRotatedCA(t *testing.T) {
	s := startStack(t, stack.Config{Manifests: demoManifests(t)})
	ctx := context.Background()
	pids := s.PIDs()

	first, err := s.EnvoyCertificates(ctx, stack.GatewayURI)
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != 1 {
		t.Fatalf("Envoy holds %d certificates for %s, want 1: %v", len(first), stack.GatewayURI, first)
	}
	if err := s.PKI().RenewGatewayCertificate(); err != nil {
		t.Fatal(err)
	}
	renewed, err := s.PKI().GatewayCertificateSerial()
	if err != nil {
		t.Fatal(err)
	}
	if renewed == first[0] {
		t.Fatalf("the renewed certificate has the old serial %s", renewed)
	}
	waitFor(t, certificateReloadTimeout, "Envoy to load the renewed client certificate", func() error {
		got, err := s.EnvoyCertificates(ctx, stack.GatewayURI)
		if err != nil {
			return err
		}
		if !slices.Equal(got, []string{renewed}) {
			return fmt.Errorf("Envoy holds %v for %s, want only the renewed %s (the first was %s)", got, stack.GatewayURI, renewed, first[0])
		}
		return nil
	})

	const shop = "shop/shop"
	version := hostPolicy(t, s, "shop.example.com").PolicyVersion
	waitFor(t, reconvergeTarget, "the control plane to see the agent apply the demo policy", func() error {
		return agentConverged(s, shop, version)
	})
	oldCAs, err := s.EnvoyCAs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	newCA, err := s.PKI().RotateCA()
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, certificateReloadTimeout, "Envoy to load the rotated CA bundle", func() error {
		got, err := s.EnvoyCAs(ctx)
		if err != nil {
			return err
		}
		if !slices.Contains(got, newCA) || len(got) != len(oldCAs)+1 {
			return fmt.Errorf("Envoy verifies with CAs %v, want %v and the new %s", got, oldCAs, newCA)
		}
		return nil
	})

	// The next connections use them: after a restart of the control plane,
	// now serving a certificate of the new CA, Envoy must complete a new
	// handshake with its renewed certificate and get its filter
	// configuration again, and the agent must connect and apply its
	// policies, as the new control plane process sees.
	const handshakes = "cluster.meshwaf_xds.ssl.handshake"
	const updates = stack.ECDSStatPrefix + "update_success"
	filter := "^(" + regexp.QuoteMeta(handshakes) + "|" + regexp.QuoteMeta(updates) + ")$"
	before, err := s.EnvoyStats(ctx, filter)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.KillControlPlane(); err != nil {
		t.Fatal(err)
	}
	if err := s.RestartControlPlane(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, reconvergeTarget+noticeTimeout, "Envoy to reconnect to the control plane's new certificate", func() error {
		now, err := s.EnvoyStats(ctx, filter)
		if err != nil {
			return err
		}
		if now[handshakes] <= before[handshakes] || now[updates] <= before[updates] {
			return fmt.Errorf("%s %d (was %d), %s %d (was %d): want both to grow",
				handshakes, now[handshakes], before[handshakes], updates, now[updates], before[updates])
		}
		return nil
	})
	waitFor(t, reconvergeTarget+noticeTimeout, "the agent to reconnect to the control plane's new certificate", func() error {
		return agentConverged(s, shop, version)
	})
	if now := s.PIDs(); now.Envoy != pids.Envoy || now.Agent != pids.Agent {
		t.Errorf("Envoy or the agent restarted: PIDs %+v, were %+v", now, pids)
	}
	if r := send(t, s, request{method: http.MethodGet, host: "shop.example.com", target: "/?id=1%27%20OR%201=1--"}); r.status != http.StatusForbidden {
		t.Errorf("SQL injection after the rotation: status %d, want 403", r.status)
	}
}
