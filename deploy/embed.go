package deploy

import "embed"

// Paths of the Istio fragments inside FS.
const (
	IstioBootstrapOverride = "istio/bootstrap-override.yaml"
	IstioEnvoyFilter       = "istio/envoyfilter.yaml"
)

// FS holds the deployment files, read-only, with their repository paths
// relative to this directory.
//
//go:embed istio/*.yaml
var FS embed.FS
