#!/usr/bin/env bash
# Installs the Istio parts meshwaf's Istio tests run (issue 11): istiod
# (pilot-discovery) and the proxy agent (pilot-agent), built from the Go
# module proxy, with the three files of the Istio release the tests need,
# then prints them on stdout, env-style and nothing else there:
#
#   MESHWAF_PILOT_DISCOVERY=/.../istio-<version>/bin/pilot-discovery
#   MESHWAF_PILOT_AGENT=/.../istio-<version>/bin/pilot-agent
#   MESHWAF_ISTIO_BOOTSTRAP=/.../istio-<version>/envoy_bootstrap.json
#   MESHWAF_ISTIO_CRDS=/.../istio-<version>/crds.yaml
#   MESHWAF_ISTIO_INJECTOR=/.../istio-<version>/injector.yaml
#
# Progress goes to stderr. `export $(scripts/install-istio.sh)` before
# `go test` hands the paths to the tests.
#
# Why a source build: Istio's release archives are not reachable from our
# machines; the Go module proxy has istio.io/istio. The pinned commit is the
# one the reference run used (shared reference istio-real.md), with the
# replaces it needed: go-control-plane's envoy module at v1.40.0 (the Envoy
# the tests run), istio.io/api and istio.io/client-go at the 1.31.1 release.
# A throwaway module (created here, in the cache, never in the repository
# tree that `go test ./...` scans) requires it and builds the two commands.
#
# The bootstrap template is Istio's own (tools/packaging/common in the
# istio module), which pilot-agent renders for every proxy; the CRDs are the
# release's (istio.io/api); the injector is the ConfigMap
# istio-sidecar-injector as the release's istio-discovery chart renders it
# with its defaults (helm, scripts/install-helm.sh): istiod's Gateway API
# deployment controller renders a Gateway's Deployment from its
# kube-gateway template and its values. Cold, on 2 cores, the build takes 8-13 minutes;
# the result is cached under $MESHWAF_CACHE keyed by version, so later runs
# print the paths at once.
#
# Environment:
#   MESHWAF_CACHE  cache root (default ~/.cache/meshwaf)
#   GO             go command (default go)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/cache.sh"

istio_module_version="v0.0.0-20260827124520-eed52ebb66ad"
istio_api_version="v1.31.1"
envoy_api_version="v1.40.0"
envoy_contrib_version="v1.36.1-0.20260729145720-a2d8c7492908"
version="1.31.1-${istio_module_version##*-}"

root="${cache}/istio-${version}"
bin="${root}/bin"
go="${GO:-go}"

injector="${root}/injector.yaml"

print_paths() {
  printf 'MESHWAF_PILOT_DISCOVERY=%s\nMESHWAF_PILOT_AGENT=%s\nMESHWAF_ISTIO_BOOTSTRAP=%s\nMESHWAF_ISTIO_CRDS=%s\nMESHWAF_ISTIO_INJECTOR=%s\n' \
    "${bin}/pilot-discovery" "${bin}/pilot-agent" "${root}/envoy_bootstrap.json" "${root}/crds.yaml" "${injector}"
}

# render_injector renders the injector ConfigMap from the istio module's
# chart, once: a step of its own (not part of `complete`), so that a cache
# built before it existed gets it in seconds instead of a rebuild.
render_injector() {
  [[ -s "${injector}" ]] && return 0
  local helm istio_dir
  helm="$("$(dirname "${BASH_SOURCE[0]}")/install-helm.sh")" || die "helm is needed to render the injector"
  istio_dir="$(cd "${root}/src" && GOWORK=off GOFLAGS=-mod=mod "${go}" list -m -f '{{.Dir}}' istio.io/istio)" \
    || die "istio.io/istio not found from ${root}/src"
  log "rendering istiod's injector ConfigMap (istio-discovery chart) into ${injector}"
  "${helm}" template istiod "${istio_dir}/manifests/charts/istio-control/istio-discovery" \
    --namespace istio-system --show-only templates/istiod-injector-configmap.yaml >"${injector}.tmp" \
    || die "helm template of the istio-discovery chart failed"
  grep -q 'kube-gateway:' "${injector}.tmp" || die "the rendered injector has no kube-gateway template"
  mv "${injector}.tmp" "${injector}"
}

complete() {
  [[ -f "${root}/.meshwaf-complete" && -x "${bin}/pilot-discovery" && -x "${bin}/pilot-agent" ]]
}

if built_or_locked "${root}" complete; then
  render_injector
  print_paths
  exit 0
fi

command -v "${go}" >/dev/null 2>&1 || die "go not found"
start=$(date +%s)
log "building pilot-discovery and pilot-agent (istio.io/istio ${istio_module_version}) into ${bin} (8-13 min cold on 2 cores)"

src="${root}/src"
rm -rf "${src}" "${bin}"
mkdir -p "${src}" "${bin}"
cd "${src}"

# The build must not see the caller's module or workspace.
export GOWORK=off GOFLAGS=-mod=mod GO111MODULE=on

cat > go.mod <<EOF
// Throwaway module written by meshwaf's scripts/install-istio.sh.
module meshwaf.local/istio-build

go 1.26.0

require istio.io/istio ${istio_module_version}

replace (
	github.com/envoyproxy/go-control-plane/contrib => github.com/envoyproxy/go-control-plane/contrib ${envoy_contrib_version}
	github.com/envoyproxy/go-control-plane/envoy => github.com/envoyproxy/go-control-plane/envoy ${envoy_api_version}
	istio.io/api => istio.io/api ${istio_api_version}
	istio.io/client-go => istio.io/client-go ${istio_api_version}
)
EOF
# A file that imports both commands' packages, so that tidy keeps every
# module they need.
cat > tools.go <<'EOF'
//go:build tools

package tools

import (
	_ "istio.io/istio/pilot/cmd/pilot-agent"
	_ "istio.io/istio/pilot/cmd/pilot-discovery"
)
EOF

log "resolving dependencies (go mod tidy in ${src})"
"${go}" mod tidy >&2 || die "go mod tidy failed in ${src}"

for cmd in pilot-discovery pilot-agent; do
  log "building ${cmd} ($(( $(date +%s) - start ))s so far)"
  CGO_ENABLED=0 "${go}" build -trimpath -ldflags "-s -w" -o "${bin}/${cmd}" "istio.io/istio/pilot/cmd/${cmd}" >&2 \
    || die "go build ${cmd} failed"
done

istio_dir="$("${go}" list -m -f '{{.Dir}}' istio.io/istio)"
api_dir="$("${go}" list -m -f '{{.Dir}}' istio.io/api)"
cp "${istio_dir}/tools/packaging/common/envoy_bootstrap.json" "${root}/envoy_bootstrap.json" \
  || die "no bootstrap template in ${istio_dir}"
cp "${api_dir}/kubernetes/customresourcedefinitions.gen.yaml" "${root}/crds.yaml" \
  || die "no CRDs in ${api_dir}"
chmod 0644 "${root}/envoy_bootstrap.json" "${root}/crds.yaml"

"${bin}/pilot-discovery" version --short >&2 || die "built pilot-discovery does not run"
"${bin}/pilot-agent" version --short >&2 || die "built pilot-agent does not run"
touch "${root}/.meshwaf-complete"
render_injector
log "done in $(( $(date +%s) - start ))s"
print_paths
