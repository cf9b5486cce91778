package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Plural is the resource name of WAFPolicy in API paths and RBAC rules.
const Plural = "wafpolicies"

var (
	// SchemeGroupVersion is the group and version WAFPolicy is served as.
	SchemeGroupVersion = schema.GroupVersion{Group: Group, Version: Version}
	// GroupVersionResource is what dynamic clients and informers ask for.
	GroupVersionResource = SchemeGroupVersion.WithResource(Plural)

	// SchemeBuilder registers the types with a runtime.Scheme, so typed
	// clients (client-go REST clients, controller-runtime) can decode them.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)
	// AddToScheme adds WAFPolicy and WAFPolicyList to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

// Resource qualifies a resource name with this package's group, as
// apimachinery's error constructors want it.
func Resource(resource string) schema.GroupResource {
	return SchemeGroupVersion.WithResource(resource).GroupResource()
}

func addKnownTypes(scheme *runtime.Scheme) error {
	scheme.AddKnownTypes(SchemeGroupVersion, &WAFPolicy{}, &WAFPolicyList{})
	metav1.AddToGroupVersion(scheme, SchemeGroupVersion)
	return nil
}

// WAFPolicyList is a list of WAFPolicies, as the API server returns it.
//
// +kubebuilder:object:root=true
type WAFPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`

	Items []WAFPolicy `json:"items"`
}
