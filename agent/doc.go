// Package agent is the meshwaf node agent runtime. It subscribes to host
// policies from the control plane over delta xDS (policy client), compiles
// each distinct policy into one shared Coraza WAF (registry), answers Envoy's
// ext_authz Check calls with a verdict (authz server), writes one JSON audit
// line per audited transaction, and serves health, readiness, metrics and a
// debug view over HTTP.
//
// Checks never wait for compilation: the routing table they read is swapped
// atomically once every policy of an update is compiled.
//
// agent imports agentapi, seclang, Coraza, go-control-plane's Envoy protos and
// gRPC. It must not import watch, snapshot, xds or store.
package agent
