// Package agent is the meshwaf node agent runtime. It subscribes to host
// policies from the control plane over delta xDS (policy client), compiles
// each distinct policy into one shared Coraza WAF (registry), answers Envoy's
// ext_authz Check calls and ext_proc streams with verdicts, writes one JSON
// audit line per audited transaction, and serves health, readiness, metrics
// and a debug view over HTTP.
//
// Both protocols share one transaction pipeline (inspector, exchange): the
// policy lookup, the Coraza phases, the verdict, metrics and audit. The
// protocol adapters (authz.go, extproc.go, procstream.go) only translate
// Envoy's messages into phase calls and verdicts into Envoy's answers. Every
// answer comes in time (deadline.go), and nothing a request contains turns
// into a gRPC error.
//
// Inspections never wait for compilation: the routing table they read is
// swapped atomically once every policy of an update is compiled.
//
// agent imports agentapi, seclang, Coraza, go-control-plane's Envoy protos and
// gRPC. It must not import watch, snapshot, xds or store.
package agent
