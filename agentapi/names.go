package agentapi

import (
	"fmt"
	"strings"
)

// HostPolicyTypeURL is the xDS type URL agents subscribe to.
const HostPolicyTypeURL = "type.googleapis.com/meshwaf.agent.v1.HostPolicy"

// GatewayMetadataKey is the gRPC metadata key Envoy sends with every
// ext_authz/ext_proc call (from the filter's initial_metadata). Its values are
// the "<namespace>/<name>" of the gateways the calling Envoy serves, or
// "<namespace>/service:<name>" of the protected Services whose pods it is a
// sidecar of, so the agent knows whose host policies apply.
const GatewayMetadataKey = "x-meshwaf-gateway"

// PolicyDigestMetadataKey is the gRPC metadata key carrying a digest of the
// host policy versions the calling Envoy's gateways had when its filter was
// configured. It changes with every policy change, so each change is also
// a visible ECDS update on the gateway.
const PolicyDigestMetadataKey = "x-meshwaf-policy-digest"

// GatewayWide is the host of a policy that applies to every host of a
// gateway, and of every policy on a Service.
const GatewayWide = "*"

// ResourceName is the xDS resource name of the policy for host on gateway
// ("<namespace>/<name>").
func ResourceName(gateway, host string) string {
	return gateway + "/" + host
}

// SplitResourceName is the inverse of ResourceName.
func SplitResourceName(name string) (gateway, host string, err error) {
	parts := strings.SplitN(name, "/", 3)
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return "", "", fmt.Errorf("host policy name %q is not <namespace>/<gateway>/<host>", name)
	}
	return parts[0] + "/" + parts[1], parts[2], nil
}
