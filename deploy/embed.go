package deploy

import "embed"

// Paths of the Istio fragments inside FS.
const (
	IstioBootstrapOverride = "istio/bootstrap-override.yaml"
	IstioEnvoyFilter       = "istio/envoyfilter.yaml"
	// AgentDaemonSet holds the agent's DaemonSet, whose container
	// environment the integration harness gives the agent processes it
	// starts.
	AgentDaemonSet = "kubernetes/30-agent.yaml"
)

// FS holds the deployment files, read-only, with their repository paths
// relative to this directory.
//
//go:embed istio/*.yaml kubernetes/30-agent.yaml
var FS embed.FS
