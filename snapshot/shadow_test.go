package snapshot

import (
	"slices"
	"testing"

	"github.com/meshwaf/meshwaf/agentapi"
	"github.com/meshwaf/meshwaf/api/v1alpha1"
	"github.com/meshwaf/meshwaf/store"
)

// A policy's shadow reaches the agent in its host policies, its rule set
// with the CRS defaults and its exclusions apart from the policy's; a
// policy without one sends none.
func TestShadowTravelsInTheHostPolicy(t *testing.T) {
	objs := store.Objects{
		Gateways: []*store.Gateway{service("shop", "api", map[string]string{"app": "api"})},
		Policies: []*store.Policy{policy("shop", "api", 0, v1alpha1.WAFPolicySpec{
			TargetRefs: target("", "Service", "", "api"),
			Exclusions: []v1alpha1.Exclusion{{RuleIDs: []string{"920350"}}},
			Shadow: &v1alpha1.Shadow{
				CRS:        v1alpha1.CRS{ParanoiaLevel: 2},
				Exclusions: []v1alpha1.Exclusion{{RuleIDs: []string{"942430"}, Paths: []string{"/comments"}}},
			},
		})},
	}
	hp := build(t, objs).HostPolicies[agentapi.ResourceName("shop/service:api", agentapi.GatewayWide)]
	sh := hp.GetShadow()
	if sh.GetCrs().GetParanoiaLevel() != 2 || sh.GetCrs().GetInboundAnomalyThreshold() != v1alpha1.DefaultInboundAnomalyThreshold ||
		len(sh.GetExclusions()) != 1 || !slices.Equal(sh.GetExclusions()[0].GetRuleIds(), []string{"942430"}) {
		t.Errorf("shadow = %v", sh)
	}
	if hp.GetCrs().GetParanoiaLevel() != 1 || len(hp.GetExclusions()) != 1 {
		t.Errorf("the policy's own rule set and exclusions changed: %v", hp)
	}
	objs.Policies[0].Spec.Shadow = nil
	if hp := build(t, objs).HostPolicies[agentapi.ResourceName("shop/service:api", agentapi.GatewayWide)]; hp.GetShadow() != nil {
		t.Errorf("a policy without shadow sends %v", hp.GetShadow())
	}
}
