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

// A gateway's client certificate for the control plane is renewed without
// restarting the gateway: when its Secret's files are swapped the way the
// kubelet swaps them (a new ..data link moved into the mounted folder),
// Envoy loads the new certificate through file-based SDS
// (deploy/istio/bootstrap-override.yaml), and the next connection it opens
// to the control plane completes its TLS handshake with it and is served
// ECDS again, while the same Envoy keeps blocking attacks.
func TestGatewayLoadsRenewedClientCertificate(t *testing.T) {
	s := startStack(t, stack.Config{Manifests: demoManifests(t)})
	ctx := context.Background()
	envoyPID := s.PIDs().Envoy

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

	// The next connection uses it: after a restart of the control plane
	// Envoy's only client certificate is the renewed one, and it must
	// complete a new handshake and get its filter configuration again.
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
	waitFor(t, reconvergeTarget+noticeTimeout, "Envoy to reconnect with the renewed certificate", func() error {
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
	if got := s.PIDs().Envoy; got != envoyPID {
		t.Errorf("Envoy pid %d, want %d: the gateway restarted", got, envoyPID)
	}
	if r := send(t, s, request{method: http.MethodGet, host: "shop.example.com", target: "/?id=1%27%20OR%201=1--"}); r.status != http.StatusForbidden {
		t.Errorf("SQL injection after the renewal: status %d, want 403", r.status)
	}
}
