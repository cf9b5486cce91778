// Package deploy holds the files that attach meshwaf to a real installation:
// today the Istio fragments in istio/ (the gateway bootstrap override with
// the static meshwaf_xds cluster, and the EnvoyFilter that inserts the
// meshwaf.waf filter); the Kubernetes manifests in kubernetes/; later the
// Helm chart.
//
// The Istio fragments and the agent's DaemonSet are embedded so that the
// integration harness builds its Envoy configuration, and sets the agent's
// environment, from exactly what users apply, instead of from a copy that
// could drift. The package has no logic and imports no meshwaf package.
package deploy
