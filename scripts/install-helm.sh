#!/usr/bin/env bash
# Installs Helm, which renders meshwaf's chart (deploy/helm/meshwaf) into the
# plain manifests under deploy/ (make generate-deploy; make check-generated
# compares), and prints the binary's path on stdout and nothing else there.
#
# Helm is built from the Go module proxy (no prebuilt download is reachable
# from our machines): about a minute with a warm module cache. The binary is
# cached under $MESHWAF_CACHE keyed by version, so later runs print the path
# at once.
#
# Environment:
#   MESHWAF_CACHE         cache root (default ~/.cache/meshwaf)
#   MESHWAF_HELM_VERSION  Helm release (default v3.22.0; the committed
#                         manifests were rendered with it)
#   GO                    go command (default go)
set -euo pipefail

version="${MESHWAF_HELM_VERSION:-v3.22.0}"
cache="${MESHWAF_CACHE:-${HOME}/.cache/meshwaf}"
bin="${cache}/helm-${version}/bin"
go="${GO:-go}"

if [[ ! -x "${bin}/helm" ]]; then
  echo "install-helm: building helm ${version} into ${bin}" >&2
  mkdir -p "${bin}"
  # Outside the repository, so meshwaf's go.mod plays no part; GOFLAGS is
  # cleared for the same reason.
  (cd "${bin}" && GOBIN="${bin}.tmp" GOFLAGS= "${go}" install "helm.sh/helm/v3/cmd/helm@${version}") >&2
  mv "${bin}.tmp/helm" "${bin}/helm"
  rmdir "${bin}.tmp"
fi
echo "${bin}/helm"
