// Package admission serves the Kubernetes validating admission webhook for
// WAFPolicy: a policy the agents could not compile is refused at `kubectl
// apply` time, with a message naming the problem.
//
// The check itself is injected (cmd/xds passes the same one the sources
// use), so the webhook and the control plane never disagree. This package
// must not import watch, snapshot, xds or agent.
package admission
