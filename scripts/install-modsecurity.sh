#!/usr/bin/env bash
# Installs nginx with ModSecurity v3 from Debian's packages (Debian 12:
# nginx 1.22, libnginx-mod-http-modsecurity, libmodsecurity3 3.0.9), the
# peer the benchmark (integration/bench/peer*.go) measures meshwaf against, then prints
# two lines on stdout and nothing else there, so callers can capture them:
#
#   the nginx binary
#   the ModSecurity module (ngx_http_modsecurity_module.so)
#
# Progress goes to stderr. Idempotent: with both present, it installs
# nothing. It fails loudly (non-zero exit, the reason on stderr) when it
# cannot install, because the benchmark's comparison is meaningless without
# the peer and must not be skipped silently.
#
# Distribution packages, not a build from source: they are what an operator
# choosing nginx + ModSecurity on this platform would run.
#
# Environment:
#   MESHWAF_NGINX_PACKAGES  packages to install (default below)
set -euo pipefail

packages="${MESHWAF_NGINX_PACKAGES:-nginx libnginx-mod-http-modsecurity}"
module_dir=/usr/lib/nginx/modules
module="${module_dir}/ngx_http_modsecurity_module.so"

installed() {
  command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || return 1
  [[ -f "${module}" ]]
}

if ! installed; then
  echo "install-modsecurity: installing ${packages}" >&2
  command -v apt-get >/dev/null 2>&1 || {
    echo "install-modsecurity: apt-get not found; install nginx and libnginx-mod-http-modsecurity (ModSecurity v3) by hand" >&2
    exit 1
  }
  sudo=()
  if [[ "$(id -u)" -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || {
      echo "install-modsecurity: not root and no sudo; run as root: apt-get install ${packages}" >&2
      exit 1
    }
    sudo=(sudo -n)
  fi
  # Serialise concurrent runs (parallel test packages): dpkg holds its own
  # lock and would fail the second one instead of waiting.
  lock="${TMPDIR:-/tmp}/meshwaf-install-modsecurity.lock"
  exec 9>"${lock}"
  flock 9
  if ! installed; then
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq >&2
    # nginx's package starts the service on install where a service
    # manager runs. A policy-rc.d that says "no" keeps it from doing so, so
    # that no system nginx holds port 80 or runs beside the benchmark's
    # own; one already there is left as it is.
    own_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
      "${sudo[@]}" sh -c 'printf "#!/bin/sh\nexit 101\n" >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d'
      own_policy=1
    fi
    status=0
    # shellcheck disable=SC2086 # packages is a word list
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends ${packages} >&2 || status=$?
    if [[ ${own_policy} -eq 1 ]]; then
      "${sudo[@]}" rm -f /usr/sbin/policy-rc.d
    fi
    if [[ ${status} -ne 0 ]]; then
      echo "install-modsecurity: apt-get install ${packages} failed (exit ${status})" >&2
      exit 1
    fi
  fi
  flock -u 9
  installed || {
    echo "install-modsecurity: installed ${packages}, but nginx or ${module} is still missing" >&2
    exit 1
  }
fi

nginx="$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)"
printf '%s\n%s\n' "${nginx}" "${module}"
