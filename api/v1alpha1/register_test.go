package v1alpha1

import (
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
)

func TestAddToScheme(t *testing.T) {
	s := runtime.NewScheme()
	if err := AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{Kind, Kind + "List"} {
		obj, err := s.New(SchemeGroupVersion.WithKind(kind))
		if err != nil {
			t.Fatalf("%s not registered: %v", kind, err)
		}
		// DeepCopyObject comes from the generated code; a stale file would
		// not compile, a missing one would not satisfy runtime.Object.
		if obj.DeepCopyObject() == nil {
			t.Fatalf("%s: DeepCopyObject returned nil", kind)
		}
	}
	if got := GroupVersionResource.String(); got != "waf.meshwaf.io/v1alpha1, Resource=wafpolicies" {
		t.Fatalf("GroupVersionResource = %s", got)
	}
}

func TestDeepCopyIsIndependent(t *testing.T) {
	inspect := true
	p := &WAFPolicy{Spec: WAFPolicySpec{
		TargetRefs:  []TargetRef{{Group: "networking.istio.io", Kind: "Gateway", Name: "public"}},
		RequestBody: RequestBody{Inspect: &inspect},
		Exclusions:  []Exclusion{{RuleIDs: []string{"942100"}}},
	}}
	c := p.DeepCopy()
	c.Spec.TargetRefs[0].Name = "other"
	*c.Spec.RequestBody.Inspect = false
	c.Spec.Exclusions[0].RuleIDs[0] = "1"
	if p.Spec.TargetRefs[0].Name != "public" || !*p.Spec.RequestBody.Inspect || p.Spec.Exclusions[0].RuleIDs[0] != "942100" {
		t.Fatal("DeepCopy shares memory with the original")
	}
}
