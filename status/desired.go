package status

import (
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshwaf/meshwaf/api/v1alpha1"
	"github.com/meshwaf/meshwaf/snapshot"
	"github.com/meshwaf/meshwaf/xds"
)

// Desired returns the status policy should have, starting from current so
// that conditions that did not change keep their transition times.
func Desired(p snapshot.PolicyStatus, conv xds.PolicyConvergence, current v1alpha1.WAFPolicyStatus) v1alpha1.WAFPolicyStatus {
	out := v1alpha1.WAFPolicyStatus{
		ObservedGeneration: p.Generation,
		Conditions:         slices.Clone(current.Conditions),
		Hosts:              p.Hosts,
		Agents:             agentsStatus(p, conv),
	}
	set := func(condType string, ok bool, reason, message string) {
		status := metav1.ConditionFalse
		if ok {
			status = metav1.ConditionTrue
		}
		meta.SetStatusCondition(&out.Conditions, metav1.Condition{
			Type: condType, Status: status, Reason: reason, Message: message, ObservedGeneration: p.Generation,
		})
	}

	if p.Rejected == "" {
		set(v1alpha1.ConditionAccepted, true, "Accepted", "the policy is valid and its rules compile")
	} else {
		msg := p.Rejected
		if p.SpecGeneration > 0 {
			msg += fmt.Sprintf(" (generation %d stays in force)", p.SpecGeneration)
		}
		set(v1alpha1.ConditionAccepted, false, "Invalid", msg)
	}
	if len(p.Unresolved) == 0 {
		set(v1alpha1.ConditionResolvedRefs, true, "ResolvedRefs", "every target exists")
	} else {
		set(v1alpha1.ConditionResolvedRefs, false, "TargetNotFound", strings.Join(p.Unresolved, "; "))
	}
	if len(p.Conflicts) == 0 {
		set(v1alpha1.ConditionConflicted, false, "NoConflict", "no other policy claims these hosts")
	} else {
		set(v1alpha1.ConditionConflicted, true, "HostsTaken", strings.Join(p.Conflicts, "; "))
	}
	a := out.Agents
	switch {
	case p.Version == "":
		set(v1alpha1.ConditionProgrammed, false, "Invalid", "no version of this policy was ever accepted")
	case len(p.Hosts) == 0:
		set(v1alpha1.ConditionProgrammed, false, "NoHosts", "the policy protects no host")
	case a.Desired == 0:
		set(v1alpha1.ConditionProgrammed, false, "NoAgents", "no agent is connected")
	case a.Applied == a.Desired:
		set(v1alpha1.ConditionProgrammed, true, "Programmed", fmt.Sprintf("applied by %d of %d agents", a.Applied, a.Desired))
	default:
		set(v1alpha1.ConditionProgrammed, false, "Pending", fmt.Sprintf("applied by %d of %d agents", a.Applied, a.Desired))
	}
	return out
}

// agentsStatus is the fleet's convergence as the API shows it.
func agentsStatus(p snapshot.PolicyStatus, conv xds.PolicyConvergence) v1alpha1.AgentsStatus {
	out := v1alpha1.AgentsStatus{PolicyVersion: p.Version, Desired: int32(conv.Desired), Applied: int32(conv.Applied)}
	for _, r := range conv.Rejected {
		out.Rejected = append(out.Rejected, v1alpha1.AgentRejection{Agent: r.Agent, Reason: r.Reason})
	}
	return out
}
