package integration

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/meshwaf/meshwaf/integration/stack"
)

// Before the control plane has ever answered, the gateway must deny every
// request with the RBAC default_config from deploy/istio/envoyfilter.yaml.
// This also proves that the deploy files load in a real Envoy.
func TestFailClosedBeforeFirstConfig(t *testing.T) {
	s := startStack(t, stack.Config{EnvoyOnly: true})

	for _, r := range []request{
		{host: "shop.example.com", target: "/"},
		{host: "api.example.com", target: "/products?id=1"},
		{method: http.MethodPost, host: "shop.example.com", target: "/login",
			contentType: "application/x-www-form-urlencoded", body: "user=a"},
	} {
		resp := send(t, s, r)
		if resp.status != http.StatusForbidden || !strings.Contains(resp.body, "RBAC") {
			t.Errorf("%s: got %d %q, want 403 from the RBAC default", r, resp.status, resp.body)
		}
	}
	if n := s.BackendRequests(); n != 0 {
		t.Errorf("%d requests reached the backend, want none", n)
	}
	if n, err := s.ECDSReloads(context.Background()); err != nil || n != 0 {
		t.Errorf("ECDS reloads = %d (err %v), want 0 without a control plane", n, err)
	}
}
