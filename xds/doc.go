// Package xds is meshwaf's one gRPC server. It serves the meshwaf.waf
// filter's configuration to Envoy over ECDS (state of the world and delta),
// keyed by each proxy's gateway identity, and HostPolicy resources to
// agents over delta xDS, recording which agent applied (ACKed) or rejected
// (NACKed) what.
//
// It answers nothing before the first snapshot, so no proxy or agent ever
// sees an empty configuration at start. It depends on snapshot types,
// agentapi and go-control-plane; it must not import watch or agent.
package xds
