// Package v1alpha1 holds the Go types of meshwaf's WAFPolicy custom resource
// (group waf.meshwaf.io, version v1alpha1) and the defaults and validation
// rules that apply to it wherever it comes from (a YAML file or the
// Kubernetes API).
//
// The kubebuilder markers on the types are the source of the generated
// zz_generated.deepcopy.go and of deploy/crds/waf.meshwaf.io_wafpolicies.yaml;
// `make generate` rewrites both and `make check-generated` fails when they
// are stale.
//
// It imports Kubernetes API machinery types and agentapi (whose defaults it
// shares); it must not import any other meshwaf package.
//
// +kubebuilder:object:generate=true
// +groupName=waf.meshwaf.io
package v1alpha1
