// Package controlplane assembles meshwaf's control plane from its parts: a
// source (watch: a folder of manifests, or the Kubernetes API) fills the
// store, the rebuild loop turns the store into snapshots, and the xds
// server serves them to Envoy (ECDS) and to agents (host policies); on
// Kubernetes the status package reports on every WAFPolicy under leader
// election, and the admission webhook checks policies before they are
// stored. cmd/xds turns flags into a Config and runs it; the feature tests
// (controlplane/featuretest) run it in-process.
//
// controlplane imports the control plane's packages (watch, store, rebuild,
// snapshot, xds, status, admission, kubeauth, tlsfiles, seclang) and
// client-go; nothing of meshwaf imports it but cmd/xds and its tests.
package controlplane
