package policytest

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/meshwaf/meshwaf/agent"
	"github.com/meshwaf/meshwaf/api/v1alpha1"
	"github.com/meshwaf/meshwaf/seclang"
	"github.com/meshwaf/meshwaf/snapshot"
	"github.com/meshwaf/meshwaf/store"
	"github.com/meshwaf/meshwaf/watch"
)

// Policies are the host policies a folder of manifests gives, compiled as
// an agent compiles them.
type Policies struct {
	reg *agent.Registry
	// gateways are the gateway identities the host policies name, in the
	// order a request's host is looked up when no gateway is chosen.
	gateways []string
	// Warnings say what a running control plane would report in the
	// policies' status: targets not found, hosts held by an older policy.
	Warnings []string
}

// readManifests reads the manifests under path as the control plane
// would; a document it would reject is an error naming the file.
func readManifests(path string) (store.Objects, error) {
	objs, rejected, err := watch.Load(path, func(spec v1alpha1.WAFPolicySpec) error {
		return seclang.ValidateCustomRules(spec.CustomRules)
	})
	if err != nil {
		return store.Objects{}, err
	}
	if len(rejected) > 0 {
		return store.Objects{}, fmt.Errorf("rejected manifests:\n  %w", errors.Join(rejected...))
	}
	return objs, nil
}

// PolicySpecs are the WAFPolicy specs of the manifests under path, by
// "namespace/name".
func PolicySpecs(path string) (map[string]v1alpha1.WAFPolicySpec, error) {
	objs, err := readManifests(path)
	if err != nil {
		return nil, err
	}
	specs := map[string]v1alpha1.WAFPolicySpec{}
	for _, p := range objs.Policies {
		if p.Spec != nil {
			specs[p.Ref.NamespacedName()] = *p.Spec
		}
	}
	return specs, nil
}

// Load reads the manifests under path (a folder or one file) and compiles
// every host policy they give. A document the control plane would reject
// is an error here, naming the file.
func Load(path string) (*Policies, error) {
	objs, err := readManifests(path)
	if err != nil {
		return nil, err
	}
	db := store.New()
	if err := db.Replace(objs); err != nil {
		return nil, err
	}
	snap, err := snapshot.Build(db.Read(), snapshot.Config{})
	if err != nil {
		return nil, err
	}
	p := &Policies{reg: agent.NewRegistry(agent.CompileCRS)}
	entries := map[string]*agent.Entry{}
	for _, name := range slices.Sorted(maps.Keys(snap.HostPolicies)) {
		hp := snap.HostPolicies[name]
		e, err := p.reg.Prepare(name, hp.GetPolicyVersion(), hp)
		if err != nil {
			return nil, fmt.Errorf("policy %s for %s: %w", hp.GetPolicy(), name, err)
		}
		entries[name] = e
		if !slices.Contains(p.gateways, hp.GetGateway()) {
			p.gateways = append(p.gateways, hp.GetGateway())
		}
	}
	p.reg.Replace(entries)
	for _, s := range snap.Policies {
		for _, u := range s.Unresolved {
			p.Warnings = append(p.Warnings, fmt.Sprintf("policy %s: %s", s.Ref.NamespacedName(), u))
		}
		for _, c := range s.Conflicts {
			p.Warnings = append(p.Warnings, fmt.Sprintf("policy %s: %s", s.Ref.NamespacedName(), c))
		}
	}
	return p, nil
}

// Gateways are the gateway identities ("namespace/name") the manifests'
// policies protect hosts on.
func (p *Policies) Gateways() []string { return slices.Clone(p.gateways) }

// Evaluate decides req as the agent would for a proxy of gateway; an
// empty gateway means whichever gateway's policy covers the request's host
// first, in the order of Gateways.
func (p *Policies) Evaluate(req Request, gateway string) (agent.Evaluation, error) {
	check, err := req.check()
	if err != nil {
		return agent.Evaluation{}, err
	}
	gateways := p.gateways
	if gateway != "" {
		if !slices.Contains(p.gateways, gateway) {
			return agent.Evaluation{}, fmt.Errorf("no policy protects a host on gateway %q (gateways with policies: %s)",
				gateway, cmp.Or(strings.Join(p.gateways, ", "), "none"))
		}
		gateways = []string{gateway}
	}
	return agent.Evaluate(p.reg, gateways, check)
}
