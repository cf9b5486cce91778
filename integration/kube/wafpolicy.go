package kube

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/meshwaf/meshwaf/api/v1alpha1"
)

// WAFPolicy reads a WAFPolicy as the API server holds it, status included.
func (c *Cluster) WAFPolicy(ctx context.Context, namespace, name string) (v1alpha1.WAFPolicy, error) {
	var p v1alpha1.WAFPolicy
	client, err := c.Dynamic()
	if err != nil {
		return p, err
	}
	u, err := client.Resource(v1alpha1.GroupVersionResource).Namespace(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return p, err
	}
	err = runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &p)
	return p, err
}

// Programmed says why p's current generation is not yet Programmed by
// every connected agent, or nil once it is.
func Programmed(p v1alpha1.WAFPolicy) error {
	prog := metav1.Condition{Type: v1alpha1.ConditionProgrammed, Status: "Unknown"}
	if c := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.ConditionProgrammed); c != nil {
		prog = *c
	}
	if prog.Status != metav1.ConditionTrue || p.Status.ObservedGeneration != p.Generation {
		return fmt.Errorf("Programmed=%s (%s), observedGeneration %d of %d, agents %+v",
			prog.Status, prog.Message, p.Status.ObservedGeneration, p.Generation, p.Status.Agents)
	}
	return nil
}
