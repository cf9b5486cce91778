// Command demo runs a complete local meshwaf (control plane, agent, echo
// backend and a real Envoy set up as an Istio ingress gateway) reading the
// manifests in examples/demo, and prints requests to try. `make demo` runs
// it. All wiring lives in integration/stack; this command only parses flags
// and waits for Ctrl-C.
package main
