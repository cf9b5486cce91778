// Package deploy holds the files that attach meshwaf to a real installation.
// The source is the Helm chart in helm/meshwaf (the WAFPolicy CRD, linked
// from crds/; RBAC; the control plane; the agents; the webhook; and the
// Istio fragments: the gateway bootstrap override with the static
// meshwaf_xds cluster, and the EnvoyFilter that inserts the meshwaf.waf
// filter). The plain manifests in kubernetes/ and istio/ are the chart
// rendered with its defaults (make generate-deploy; make check-generated
// fails when they differ), for users who apply files.
//
// The Istio fragments and the agent's DaemonSet are embedded so that the
// integration harness builds its Envoy configuration, and sets the agent's
// environment, from exactly what users apply, instead of from a copy that
// could drift. The package has no logic and imports no meshwaf package.
package deploy
