// Package kubeauth authenticates meshwaf agents to the control plane by
// their Kubernetes ServiceAccount tokens: an agent sends a projected token
// (audience "meshwaf" by default) as a gRPC bearer token, and the control
// plane asks the API server, with a TokenReview, whose it is. A token of
// one of the configured agent ServiceAccounts makes the caller an agent;
// when the token is bound to a pod, the node name the API server puts in
// it pins the node id the agent may claim.
//
// It implements xds.Authenticator and imports xds and client-go; xds must
// not import it (cmd/xds wires it in).
package kubeauth
