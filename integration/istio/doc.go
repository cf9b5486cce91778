// Package istio is the test harness of the Istio tier (issue 11): a real
// istiod (pilot-discovery) run out of cluster against integration/kube's
// real API server, and, later in this tier, gateways run the way Istio runs
// them (pilot-agent with the PyPI Envoy and Istio's bootstrap template).
//
// The parts come from scripts/install-istio.sh, which builds pilot-discovery
// and pilot-agent from the Go module proxy and caches them by version; when
// they are missing the harness runs the script and fails the test if that
// fails: an Istio test never skips.
//
// Where the harness must differ from a cluster, and why:
//   - istiod runs as a process on loopback, not as a Pod: its environment
//     (POD_NAMESPACE, POD_NAME, REVISION) is what its Deployment would set,
//     its ports are free loopback ports instead of 15010/15012/..., and its
//     mesh configuration is a file instead of the istio ConfigMap.
//   - The mesh configuration sets defaultConfig.discoveryAddress to
//     istiod's loopback address: istiod puts that host in its serving
//     certificate, which proxies verify (a Service name in a cluster).
//   - The PyPI Envoy is upstream Envoy, not Istio's build (istio-proxy),
//     which has extensions upstream lacks. istiod is told not to configure
//     the two it would otherwise use on every proxy
//     (PILOT_ENABLE_METADATA_EXCHANGE=false, PILOT_ENABLE_ALPN_FILTER=false);
//     this is the one difference in what istiod generates.
//
// It is imported only by tests; it imports integration/kube and
// integration/proc and no meshwaf runtime package.
package istio
