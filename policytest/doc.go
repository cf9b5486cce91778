// Package policytest evaluates requests against a folder of manifests
// offline, the way a running meshwaf would: the manifests go through the
// control plane's own reading (watch), resolution (snapshot) and the
// agent's own compilation and transaction pipeline (agent.Evaluate), so a
// verdict here is the agent's. It is what the meshwaf command's test
// subcommand runs, and it parses requests written as curl arguments.
//
// It imports watch, store, snapshot and agent, and is imported only by
// cmd/meshwaf and tests.
package policytest
