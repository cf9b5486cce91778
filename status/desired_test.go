package status

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshwaf/meshwaf/api/v1alpha1"
	"github.com/meshwaf/meshwaf/snapshot"
	"github.com/meshwaf/meshwaf/xds"
)

const host = "istio-ingress/public/shop.example.com"

func TestDesired(t *testing.T) {
	accepted := snapshot.PolicyStatus{Version: "v2", Hosts: []string{host}, Generation: 2, SpecGeneration: 2}
	tests := map[string]struct {
		policy     snapshot.PolicyStatus
		conv       xds.PolicyConvergence
		want       map[string]metav1.ConditionStatus
		wantReason string // of Programmed
		rejected   int
	}{
		"all agents applied": {
			policy: accepted, conv: xds.PolicyConvergence{Desired: 2, Applied: 2},
			want:       map[string]metav1.ConditionStatus{"Accepted": "True", "ResolvedRefs": "True", "Conflicted": "False", "Programmed": "True"},
			wantReason: "Programmed",
		},
		"one agent behind": {
			policy: accepted, conv: xds.PolicyConvergence{Desired: 2, Applied: 1, Pending: []string{"b"}},
			want: map[string]metav1.ConditionStatus{"Programmed": "False"}, wantReason: "Pending",
		},
		"one agent rejected it": {
			policy: accepted,
			conv:   xds.PolicyConvergence{Desired: 2, Applied: 1, Rejected: []xds.AgentRejection{{Agent: "b", Reason: host + ": rule 10001 does not compile"}}},
			want:   map[string]metav1.ConditionStatus{"Programmed": "False"}, wantReason: "Pending", rejected: 1,
		},
		"no agents": {
			policy: accepted, want: map[string]metav1.ConditionStatus{"Programmed": "False"}, wantReason: "NoAgents",
		},
		"newest generation rejected, older one enforced": {
			policy: snapshot.PolicyStatus{Version: "v1", Hosts: []string{host}, Generation: 3, SpecGeneration: 2, Rejected: "spec.mode: bad"},
			conv:   xds.PolicyConvergence{Desired: 1, Applied: 1},
			want:   map[string]metav1.ConditionStatus{"Accepted": "False", "Programmed": "True"}, wantReason: "Programmed",
		},
		"never accepted": {
			policy: snapshot.PolicyStatus{Generation: 1, Rejected: "bad rule"},
			want:   map[string]metav1.ConditionStatus{"Accepted": "False", "Programmed": "False"}, wantReason: "Invalid",
		},
		"conflicted and unresolved": {
			policy: snapshot.PolicyStatus{Version: "v1", Conflicts: []string{"x is protected by the older policy y"}, Unresolved: []string{"z not found"}},
			want:   map[string]metav1.ConditionStatus{"Conflicted": "True", "ResolvedRefs": "False", "Programmed": "False"}, wantReason: "NoHosts",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := Desired(tc.policy, tc.conv, v1alpha1.WAFPolicyStatus{})
			for condType, want := range tc.want {
				c := meta.FindStatusCondition(got.Conditions, condType)
				if c == nil || c.Status != want {
					t.Errorf("%s = %+v, want %s", condType, c, want)
				}
			}
			if c := meta.FindStatusCondition(got.Conditions, "Programmed"); c.Reason != tc.wantReason {
				t.Errorf("Programmed reason %s (%s), want %s", c.Reason, c.Message, tc.wantReason)
			}
			if got.Agents.Applied != int32(tc.conv.Applied) || got.Agents.Desired != int32(tc.conv.Desired) ||
				len(got.Agents.Rejected) != tc.rejected || got.Agents.PolicyVersion != tc.policy.Version {
				t.Errorf("agents = %+v", got.Agents)
			}
			if got.ObservedGeneration != tc.policy.Generation {
				t.Errorf("observedGeneration %d", got.ObservedGeneration)
			}
		})
	}
}

func TestDesiredKeepsTransitionTimes(t *testing.T) {
	policy := snapshot.PolicyStatus{Version: "v1", Hosts: []string{host}}
	conv := xds.PolicyConvergence{Desired: 1, Applied: 1}
	first := Desired(policy, conv, v1alpha1.WAFPolicyStatus{})
	long := metav1.NewTime(time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC))
	for i := range first.Conditions {
		first.Conditions[i].LastTransitionTime = long
	}
	again := Desired(policy, conv, first)
	for _, c := range again.Conditions {
		if !c.LastTransitionTime.Equal(&long) {
			t.Fatalf("%s transition time moved although nothing changed", c.Type)
		}
	}
}
