// Package fleet measures how the meshwaf control plane serves a large fleet
// of agents. It holds three things:
//
//   - a simulated agent (Agent): one real gRPC connection and one delta xDS
//     stream per agent, subscribed to every HostPolicy, that decodes what it
//     receives, ACKs it (or, on request, never reads, reads slowly, NACKs,
//     reconnects with initial_resource_versions) and records when each
//     version arrived and how many bytes it cost. It does not run Coraza, so
//     a thousand of them fit in one process next to the control plane;
//   - a manifest generator (Layout) writing N hosts across M WAFPolicies on
//     a few Istio Gateways, some policies narrowed to a single host so that
//     one edit changes exactly one host policy;
//   - a harness (ControlPlane, Run) that builds and runs the real
//     meshwaf-xds binary on loopback and turns all of it into the numbers of
//     docs/reports/fleet.md (`make bench-fleet`). `make test` runs the same
//     harness at a small scale so that it cannot rot.
//
// The package talks to the control plane only as a client would: over gRPC,
// over its HTTP endpoints and through its logs. It must not import xds,
// rebuild, watch, status, controlplane or agent; it imports agentapi and
// go-control-plane for the protocol types, and, to know what every agent
// should end up with, snapshot (only EncodeHostPolicy, the bytes the server
// sends) and xds/feed (the version function and the wire codec the server
// uses); its control plane runs under integration/proc like every child of
// the harnesses. docs/architecture.md's table holds these rules, and
// TestImportRules checks them.
package fleet
