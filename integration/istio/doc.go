// Package istio is the test harness and the tests of the Istio tier
// (issue 11): a real istiod (pilot-discovery) run out of cluster against
// integration/kube's real API server, and gateways run the way Istio runs
// them: pilot-agent with the PyPI Envoy, Istio's bootstrap template,
// workload certificates from istiod over its TLS port with a
// ServiceAccount token, node metadata from the environment, and meshwaf's
// bootstrap override and pod annotations from the ConfigMap the chart
// renders, as the API server holds it. meshwaf's control plane and agent
// come from integration/stack (NoEnvoy).
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
//     certificate, which proxies verify (a Service name in a cluster). For
//     the same reason the injector ConfigMap (the istio-discovery chart's,
//     which istiod renders Gateway API gateways' Deployments from) has
//     global.caAddress set to it.
//   - The PyPI Envoy is upstream Envoy, not Istio's build (istio-proxy),
//     which has extensions upstream lacks. istiod is told not to configure
//     the two it would otherwise use on every proxy
//     (PILOT_ENABLE_METADATA_EXCHANGE=false, PILOT_ENABLE_ALPN_FILTER=false);
//     this is the one difference in what istiod generates.
//   - No kubelet: what a gateway pod mounts (the ServiceAccount token with
//     audience istio-ca, the root certificate istiod publishes, the
//     bootstrap ConfigMap, the pod annotations of the downward API) are
//     files under pilot-agent's working directory, where it looks for
//     them; the Secret meshwaf-gateway-xds-tls is the stack's gateway
//     certificate folder. The pod annotations the ConfigMap lists are
//     applied as Istio's injector would, and an annotation the harness
//     does not know fails the test.
//   - No endpoint controller: the agent's DaemonSet pod is a Pod object with
//     its node (istiod resolves internalTrafficPolicy: Local through the
//     endpoint's Pod) and the agent and the demo's backend are
//     EndpointSlices naming the machine's first non-loopback address
//     (PodIP), which they listen on: an endpoint may not be loopback.
//     istiod keeps one endpoint per address and port name across a
//     Service's slices, so a second node's pods get an address of their own,
//     added to the loopback interface for the test (ExtraPodIP; root).
//   - A Gateway API Gateway's pod (StartDeployedGateway) is made from the
//     Deployment istiod generates: the harness creates the Pod from its
//     template, marks it running, writes the EndpointSlice of its Service
//     and gives the LoadBalancer Service an address (no scheduler, kubelet,
//     endpoint or cloud controller runs), then maps the istio-proxy
//     container's arguments, environment and volumes as the kubelet would,
//     failing on any it does not know. The API access volume the API
//     server's admission adds to the Pod is not mounted: its CA ConfigMap
//     comes from a controller manager, which does not run here, and the
//     proxy does not read it.
//   - Sidecars (GatewayPod.Sidecar) run without traffic capture
//     (interception mode NONE, as the sidecar.istio.io/interceptionMode
//     annotation asks): no iptables redirects here, so each workload's
//     Sidecar resource binds its inbound listener to the pod's address and
//     its egress listeners to a loopback address of its own, where the
//     test's client plays the workload's app. Everything past the
//     listeners (Istio's mutual TLS between sidecars, routes, meshwaf's
//     inbound filter) is what a captured sidecar runs.
//   - One machine is every node, so a second gateway takes other proxy
//     ports (ProxyPorts) and a Gateway of its own with its own server port;
//     the demo's gateway keeps Istio's ports and the Gateway's port 80.
//
// It is imported only by tests; it imports integration/kube,
// integration/stack and integration/proc and no meshwaf runtime package.
package istio
