package istio

import (
	"context"
	"net/http"
	"testing"
	"time"
)

// A gateway started while meshwaf-xds is down denies every request (its
// meshwaf.waf filter is the EnvoyFilter's default, an RBAC deny) until the
// control plane is back; then, without a restart, it gets its
// configuration and enforces the policy within 2 s.
func TestIstioGatewayDeniesUntilTheControlPlaneIsBack(t *testing.T) {
	dm := startDemo(t)
	if err := dm.s.KillControlPlane(); err != nil {
		t.Fatal(err)
	}
	g := dm.startGateway(t)
	envoyPID, err := g.EnvoyPID()
	if err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{benign, sqli} {
		if got := status(t, demoGateway, host, target); got != http.StatusForbidden {
			t.Errorf("GET %s before meshwaf-xds answered: %d, want 403 (the fail-closed default)", target, got)
		}
	}
	if n := dm.s.BackendRequests(); n != 0 {
		t.Errorf("%d requests reached the backend before meshwaf-xds answered, want none", n)
	}
	if n := ecdsReloads(t, g); n != 0 {
		t.Errorf("ECDS updates before meshwaf-xds answered: %d, want 0", n)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := dm.s.RestartControlPlane(ctx); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	waitStatus(t, demoGateway, host, benign, http.StatusOK, 2*time.Second)
	t.Logf("benign answered 200 %s after meshwaf-xds was ready", time.Since(start).Round(time.Millisecond))
	if got := status(t, demoGateway, host, sqli); got != http.StatusForbidden {
		t.Errorf("SQLi after recovery: %d, want 403", got)
	}
	if pid, err := g.EnvoyPID(); err != nil || pid != envoyPID {
		t.Errorf("the gateway's Envoy is pid %d (%v), was %d: it must not restart", pid, err, envoyPID)
	}
}
