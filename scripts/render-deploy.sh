#!/usr/bin/env bash
# Renders the chart deploy/helm/meshwaf, with its default values, into the
# plain manifests deploy/kubernetes/*.yaml and deploy/istio/*.yaml, for the
# users who apply files rather than install charts, and for the tests, which
# embed and apply them. The chart is the source: edit its templates, then
# run `make generate-deploy`; `make check-generated` fails when the two
# differ.
#
# Usage: scripts/render-deploy.sh [OUT]   (default: the repository; the
# files go to OUT/deploy/kubernetes and OUT/deploy/istio)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

out="${1:-.}"
helm="$(scripts/install-helm.sh)"
scratch="$(mktemp -d)"
trap 'rm -rf "${scratch}"' EXIT

# The chart's crds/ is a link to deploy/crds (controller-gen's output);
# Helm says so on stderr every time, which is expected.
"${helm}" template meshwaf deploy/helm/meshwaf --namespace meshwaf-system \
  --set createNamespace=true --output-dir "${scratch}" \
  2> >(grep -v 'found symbolic link in path' >&2) >/dev/null

for dir in kubernetes istio; do
  mkdir -p "${out}/deploy/${dir}"
  for rendered in "${scratch}"/meshwaf/templates/"${dir}"/*.yaml; do
    name="$(basename "${rendered}")"
    {
      echo "# Rendered from deploy/helm/meshwaf/templates/${dir}/${name} by \`make generate-deploy\`: edit the chart."
      # Helm starts every document with "---" and a "# Source:" line; the
      # first "---" and the source lines go.
      sed -e '/^# Source: /d' "${rendered}" | sed -e '1{/^---$/d}'
    } >"${out}/deploy/${dir}/${name}"
  done
done
