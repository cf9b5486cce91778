package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/meshwaf/meshwaf/integration/stack"

	"github.com/meshwaf/meshwaf/integration/fixtures"
)

// gatewayName is the Istio Gateway both stacks serve, as the agent names it.
const gatewayName = "istio-ingress/public"

// Hosts of the WAF stack: one per paranoia level, and one no policy
// covers (the agent answers it without inspecting: the gRPC floor).
const noPolicyHost = "nopolicy.bench.local"

func plHost(pl int32) string { return fmt.Sprintf("pl%d.bench.local", pl) }

var gatewayManifest = fixtures.IstioGateway("*/*")

// policyManifest protects host with the CRS at paranoia level pl, blocking
// (Prevent) and otherwise with WAFPolicy defaults: the same policy
// hostPolicy gives the in-process baseline.
func policyManifest(pl int32) string {
	return fmt.Sprintf(`apiVersion: waf.meshwaf.io/v1alpha1
kind: WAFPolicy
metadata: {name: pl%[1]d, namespace: istio-ingress}
spec:
  targetRefs:
  - {group: networking.istio.io, kind: Gateway, name: public}
  hosts: [%[2]s]
  mode: Prevent
  crs: {paranoiaLevel: %[1]d}
`, pl, plHost(pl))
}

// stacks are the two gateways of a run: one protected by meshwaf, one
// identical but without any policy, whose meshwaf filter is then the no-op
// RBAC filter the control plane sends.
type stacks struct {
	waf, plain *stack.Stack
}

func (s *stacks) stop() error {
	var errs []error
	for _, st := range []*stack.Stack{s.waf, s.plain} {
		if st != nil {
			if err := st.Stop(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("stop stacks: %v", errs)
	}
	return nil
}

func startStacks(ctx context.Context, cfg Config, levels []int32) (_ *stacks, err error) {
	s := &stacks{}
	defer func() {
		if err != nil {
			_ = s.stop()
		}
	}()
	var extra []string
	if cfg.Shadow {
		extra = append(extra, shadowPolicyManifest())
	}
	if s.waf, err = startWAFStack(ctx, cfg.Parts, "waf", levels, extra...); err != nil {
		return nil, err
	}
	if s.plain, err = startWAFStack(ctx, cfg.Parts, "plain", nil); err != nil {
		return nil, err
	}
	return s, nil
}

// Parts is where a run's parts come from and where it writes: shared by
// the bench (Config) and the differential (DiffConfig).
type Parts struct {
	RepoRoot  string          // meshwaf module root (required)
	RunDir    string          // logs and generated configuration (required)
	Binaries  *stack.Binaries // nil: build cmd/xds and cmd/agent (build)
	EnvoyPath string          // empty: $MESHWAF_ENVOY or scripts/install-envoy.sh
	Logf      func(format string, args ...any)
}

// build builds cmd/xds and cmd/agent into RunDir unless Binaries are set.
func (p *Parts) build(ctx context.Context) error {
	if p.Binaries != nil {
		return nil
	}
	bins, err := stack.Build(ctx, p.RepoRoot, filepath.Join(p.RunDir, "bin"))
	if err != nil {
		return err
	}
	p.Binaries = &bins
	return nil
}

// stackConfig is a stack of these parts on manifests, under dir.
func (p Parts) stackConfig(manifests, dir string) stack.Config {
	return stack.Config{Manifests: manifests, RunDir: dir, RepoRoot: p.RepoRoot, Binaries: p.Binaries,
		EnvoyPath: p.EnvoyPath, Logf: p.Logf}
}

// startWAFStack starts a gateway under cfg.RunDir/name whose manifests are
// the Gateway, a policy per level in levels (policyManifest) and extra.
func startWAFStack(ctx context.Context, cfg Parts, name string, levels []int32, extra ...string) (*stack.Stack, error) {
	docs := []string{gatewayManifest}
	for _, pl := range levels {
		docs = append(docs, policyManifest(pl))
	}
	docs = append(docs, extra...)
	dir := filepath.Join(cfg.RunDir, name)
	mdir := filepath.Join(dir, "manifests")
	if err := os.MkdirAll(mdir, 0o755); err != nil {
		return nil, err
	}
	for i, doc := range docs {
		if err := os.WriteFile(filepath.Join(mdir, fmt.Sprintf("%02d.yaml", i)), []byte(doc), 0o644); err != nil {
			return nil, err
		}
	}
	// The control plane's default agent timeout, as users run it: what does
	// not get inspected in time under load is part of the result (a 503
	// counted as a non-2xx answer).
	st, err := stack.Start(ctx, cfg.stackConfig(mdir, dir))
	if err != nil {
		return nil, fmt.Errorf("%s stack: %w", name, err)
	}
	return st, nil
}
