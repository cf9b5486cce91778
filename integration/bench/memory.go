package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/meshwaf/meshwaf/integration/stack"
)

// The agent compiles one WAF per distinct policy, and a CRS WAF is large:
// how the agent's memory grows with the number of policies decides how
// many a node can carry. Each count is measured with a stack of its own
// (control plane, agent, Envoy) whose policies differ in a custom rule, so
// that no two compile to the same WAF.

// goalMemoryPolicies and goalMemory are the acceptance line: the agent's
// resident memory with this many distinct policies.
const (
	goalMemoryPolicies = 10
	goalMemory         = 128 << 20
)

// Memory is the agent's memory with Policies distinct policies applied.
type Memory struct {
	Policies int
	// RSS is VmRSS (resident now) and HWM VmHWM (the most it was
	// resident), from /proc/<pid>/status, once every policy is in force.
	RSS, HWM int64
	// Ready is how long the agent took from start to enforcing them all.
	Ready time.Duration
}

// memoryHost is the host of policy i.
func memoryHost(i int) string { return fmt.Sprintf("p%d.memory.bench.local", i) }

// memoryPolicy is policy i: the benchmark's policy at PL1 (the default)
// for a host of its own, with a custom rule no other policy has.
func memoryPolicy(i int) string {
	return fmt.Sprintf(`apiVersion: waf.meshwaf.io/v1alpha1
kind: WAFPolicy
metadata: {name: memory-%[1]d, namespace: istio-ingress}
spec:
  targetRefs:
  - {group: networking.istio.io, kind: Gateway, name: public}
  hosts: [%[2]s]
  mode: Prevent
  customRules: |
    SecRule ARGS:bench_probe "@streq policy-%[1]d" "id:%[3]d,phase:1,deny,status:403,msg:'bench policy %[1]d'"
`, i, memoryHost(i), 1_000_000+i)
}

// measureMemory starts a stack with n distinct policies, waits until the
// agent lists all of them, sends each policy's host the request only its
// custom rule blocks (proving that each is enforced, and building anything
// built on first use), and reads the agent's memory.
func measureMemory(ctx context.Context, cfg Config, n int) (Memory, error) {
	dir := filepath.Join(cfg.RunDir, fmt.Sprintf("memory-%d", n))
	mdir := filepath.Join(dir, "manifests")
	if err := os.MkdirAll(mdir, 0o755); err != nil {
		return Memory{}, err
	}
	docs := []string{gatewayManifest}
	for i := range n {
		docs = append(docs, memoryPolicy(i))
	}
	if err := os.WriteFile(filepath.Join(mdir, "all.yaml"), []byte(strings.Join(docs, "---\n")), 0o644); err != nil {
		return Memory{}, err
	}
	start := time.Now()
	st, err := stack.Start(ctx, cfg.stackConfig(mdir, dir))
	if err != nil {
		return Memory{}, err
	}
	defer st.Stop()
	if err := waitPolicies(ctx, st, n); err != nil {
		return Memory{}, err
	}
	m := Memory{Policies: n, Ready: time.Since(start)}
	g := newGatewayClient(st.GatewayURL(), 1)
	defer g.close()
	for i := range n {
		probe := Scenario{Method: "GET", Target: fmt.Sprintf("/?bench_probe=policy-%d", i)}
		if blocked, err := g.send(probe, memoryHost(i), i); err != nil || !blocked {
			return Memory{}, fmt.Errorf("policy %d's custom rule did not block its probe (%v)", i, err)
		}
	}
	m.RSS, m.HWM, err = processMemory(st.PIDs().Agent)
	return m, err
}

// waitPolicies polls the agent's /debug/policies until it lists n
// policies, for at most ten minutes (a hundred CRS compilations on a busy
// 2-core machine).
func waitPolicies(ctx context.Context, st *stack.Stack, n int) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	for {
		ps, err := st.AgentPolicies(ctx)
		if err == nil && len(ps) == n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("agent enforces %d of %d policies (%v)", len(ps), n, err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// processMemory reads VmRSS and VmHWM of pid, in bytes.
func processMemory(pid int) (rss, hwm int64, err error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(raw), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		f := strings.Fields(v) // "123456 kB"
		if len(f) != 2 || f[1] != "kB" {
			return 0, 0, fmt.Errorf("/proc/%d/status: %q", pid, line)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, 0, err
		}
		if k == "VmRSS" {
			rss = kb << 10
		} else {
			hwm = kb << 10
		}
	}
	if rss == 0 || hwm == 0 {
		return 0, 0, fmt.Errorf("/proc/%d/status has no VmRSS or VmHWM", pid)
	}
	return rss, hwm, nil
}
