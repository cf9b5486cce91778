package integration

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/meshwaf/meshwaf/integration/stack"
)

// hotReloadDeadline is the promise: an edited policy changes
// verdicts within 2 seconds.
const hotReloadDeadline = 2 * time.Second

// ecdsCounters are the Envoy stats that show ECDS activity for meshwaf.waf:
// update_success counts accepted ECDS responses, config_reload the ones that
// changed the filter's configuration, version is a hash of the last
// accepted version_info.
type ecdsCounters struct{ updateSuccess, configReload, version uint64 }

func readECDS(t *testing.T, s *stack.Stack) ecdsCounters {
	t.Helper()
	st, err := s.EnvoyStats(context.Background(), `^extension_config_discovery\.http_filter\.meshwaf\.waf\.`)
	if err != nil {
		t.Fatal(err)
	}
	return ecdsCounters{
		updateSuccess: st[stack.ECDSStatPrefix+"update_success"],
		configReload:  st[stack.ECDSStatPrefix+"config_reload"],
		version:       st[stack.ECDSStatPrefix+"version"],
	}
}

// hostPolicy returns what the agent enforces for host on the demo gateway.
func hostPolicy(t *testing.T, s *stack.Stack, host string) stack.AgentPolicy {
	t.Helper()
	ps, err := s.AgentPolicies(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if p.Host == host && p.Gateway == "istio-ingress/public" {
			return p
		}
	}
	t.Fatalf("agent /debug/policies has no policy for %s on istio-ingress/public: %+v", host, ps)
	return stack.AgentPolicy{}
}

// Editing the policy file flips Detect and Prevent within 2 s, without
// restarting Envoy or the agent; Envoy receives an ECDS update for
// meshwaf.waf and the agent reports the new policy version.
func TestPolicyEditFlipsModeWithoutRestart(t *testing.T) {
	dir := demoManifests(t)
	s := startStack(t, stack.Config{Manifests: dir})
	pids := s.PIDs()

	if r := send(t, s, sqliGET); r.status != http.StatusForbidden {
		t.Fatalf("%s before the edit: status %d, want 403", sqliGET, r.status)
	}
	steps := []struct {
		policy     policy
		mode       string
		wantStatus int
	}{
		{shopDetect, "Detect", http.StatusOK},
		{shopPrevent, "Prevent", http.StatusForbidden},
		{shopDetect, "Detect", http.StatusOK},
	}
	for i, step := range steps {
		t.Run(fmt.Sprintf("%d to %s", i+1, step.mode), func(t *testing.T) {
			ecds := readECDS(t, s)
			version := hostPolicy(t, s, "shop.example.com").PolicyVersion

			writeFile(t, dir, "wafpolicy.yaml", policyYAML(step.policy))
			took := waitStatus(t, s, sqliGET, step.wantStatus, hotReloadDeadline)
			t.Logf("verdict changed to %d after %s", step.wantStatus, took.Round(time.Millisecond))

			// The other observations may trail the verdict by a moment;
			// they must all be true within the same deadline.
			err := poll(hotReloadDeadline-took, func() error {
				now := readECDS(t, s)
				if now.updateSuccess <= ecds.updateSuccess {
					return fmt.Errorf("update_success %d, was %d; config_reload %d, was %d; version %d, was %d",
						now.updateSuccess, ecds.updateSuccess, now.configReload, ecds.configReload, now.version, ecds.version)
				}
				return nil
			})
			if err != nil {
				t.Errorf("Envoy received no ECDS update for meshwaf.waf after the policy edit: %v", err)
			}
			p := hostPolicy(t, s, "shop.example.com")
			if p.PolicyVersion == version || p.Mode != step.mode {
				t.Errorf("agent reports version %q mode %q; want a version other than %q and mode %s",
					p.PolicyVersion, p.Mode, version, step.mode)
			}
			if now := s.PIDs(); now != pids {
				t.Errorf("PIDs changed from %+v to %+v", pids, now)
			}
			if err := s.Alive(); err != nil {
				t.Error(err)
			}
		})
	}
}

// waitFor polls check until it returns nil, and fails t at the deadline.
func waitFor(t *testing.T, timeout time.Duration, what string, check func() error) {
	t.Helper()
	if err := poll(timeout, check); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// poll calls check until it returns nil or timeout passes, and returns its
// last error. At least one check is made even if timeout is not positive.
func poll(timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// A policy edit that changes what Envoy itself must do (here the request
// body limit, which the ext_authz filter enforces) reaches Envoy as a new
// meshwaf.waf configuration over ECDS, without a restart.
func TestBodyLimitEditReachesEnvoyOverECDS(t *testing.T) {
	dir := demoManifests(t)
	s := startStack(t, stack.Config{Manifests: dir})
	pids := s.PIDs()
	post := request{method: "POST", host: "shop.example.com", target: "/upload",
		contentType: "application/x-www-form-urlencoded", body: "data=" + strings.Repeat("a", 4096)}
	if r := send(t, s, post); r.status != http.StatusOK {
		t.Fatalf("%s with the default 128 KiB limit: status %d, want 200", post, r.status)
	}
	before := readECDS(t, s)

	limited := shopPrevent
	limited.extraSpec = "  requestBody:\n    limitBytes: 1024\n"
	writeFile(t, dir, "wafpolicy.yaml", policyYAML(limited))
	took := waitStatus(t, s, post, http.StatusRequestEntityTooLarge, hotReloadDeadline)
	t.Logf("body over the new limit rejected after %s", took.Round(time.Millisecond))

	if after := readECDS(t, s); after.configReload <= before.configReload {
		t.Errorf("config_reload %d, was %d: the new limit did not arrive over ECDS", after.configReload, before.configReload)
	}
	if now := s.PIDs(); now != pids {
		t.Errorf("PIDs changed from %+v to %+v", pids, now)
	}
}
