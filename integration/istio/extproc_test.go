package istio

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshwaf/meshwaf/integration/stack"
)

// A policy that inspects responses makes the control plane give the
// gateway ext_proc instead of ext_authz, over ECDS, without a restart: a
// response rule then blocks (the demo's echo backend repeats the request
// path in its answer), and requests still get their request verdicts.
func TestIstioGatewaySwitchesToExtProcForResponseRules(t *testing.T) {
	dm := startDemo(t)
	g := dm.startGateway(t)
	envoyPID, err := g.EnvoyPID()
	if err != nil {
		t.Fatal(err)
	}
	const leak = "/secret-leak"
	waitStatus(t, demoGateway, host, benign, http.StatusOK, time.Minute)
	if got := status(t, demoGateway, host, leak); got != http.StatusOK {
		t.Fatalf("GET %s before the response rule: %d, want 200", leak, got)
	}
	if typ, err := stack.ECDSFilterType(context.Background(), g.AdminURL); err != nil || !strings.HasSuffix(typ, "ext_authz.v3.ExtAuthz") {
		t.Errorf("before the response rule the gateway's meshwaf.waf is %q (%v), want ext_authz", typ, err)
	}
	policy, err := os.ReadFile(filepath.Join(dm.root, "examples/demo/wafpolicy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	responseRule := string(policy) + `  responseBody:
    inspect: true
  customRules: |
    SecRule RESPONSE_BODY "@contains secret-leak" "id:10100,phase:4,deny,log,msg:'secret in response'"
`
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := dm.c.Apply(ctx, []byte(responseRule)); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, demoGateway, host, leak, http.StatusForbidden, 2*time.Second)
	if got := status(t, demoGateway, host, sqli); got != http.StatusForbidden {
		t.Errorf("SQLi over ext_proc: %d, want 403", got)
	}
	if got := status(t, demoGateway, host, benign); got != http.StatusOK {
		t.Errorf("benign over ext_proc: %d, want 200", got)
	}
	// Istio's stats matcher hides the filters' own counters; the config
	// dump says which filter the gateway runs.
	if typ, err := stack.ECDSFilterType(ctx, g.AdminURL); err != nil || !strings.HasSuffix(typ, "ext_proc.v3.ExternalProcessor") {
		t.Errorf("the gateway's meshwaf.waf is %q (%v), want ext_proc", typ, err)
	}
	if pid, err := g.EnvoyPID(); err != nil || pid != envoyPID {
		t.Errorf("the gateway's Envoy is pid %d (%v), was %d: it must not restart", pid, err, envoyPID)
	}
}
