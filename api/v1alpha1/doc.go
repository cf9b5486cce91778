// Package v1alpha1 holds the Go types of meshwaf's WAFPolicy custom resource
// (group waf.meshwaf.io, version v1alpha1) and the defaults and validation
// rules that apply to it wherever it comes from (a YAML file or the
// Kubernetes API).
//
// It imports Kubernetes API machinery types and agentapi (whose defaults it
// shares); it must not import any other meshwaf package.
package v1alpha1
