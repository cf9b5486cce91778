#!/usr/bin/env bash
# Installs the binaries meshwaf's Kubernetes tests run against a real API
# server with, then prints them on stdout, env-style and nothing else there:
#
#   MESHWAF_KUBE_APISERVER=/.../kube-apiserver-v1.36.3/bin/kube-apiserver
#   MESHWAF_KUBECTL=/.../kube-apiserver-v1.36.3/bin/kubectl
#   MESHWAF_ETCD=/usr/bin/etcd
#
# Progress goes to stderr. The names are the environment variables
# integration/kube reads, so `export $(scripts/install-kube.sh)` before
# `go test` hands the paths to the harness; without them it runs this script
# itself and parses the lines.
#
# Why a source build: there is no registry package of kube-apiserver, and no
# prebuilt download is reachable from our machines; the Go module proxy has
# k8s.io/kubernetes itself. A throwaway module (created here, in the cache,
# never in the repository tree that `go test ./...` scans) has two mains that
# copy upstream's cmd/kube-apiserver and cmd/kubectl. k8s.io/kubernetes's
# go.mod replaces its staging modules (k8s.io/api, k8s.io/apiserver, ...) with
# ./staging paths that do not exist in the module zip, so the throwaway module
# replaces each of them with its published v0.X.Y tag; the list is read from
# the downloaded go.mod so it cannot drift from the release.
#
# Cold, on 2 cores, the build takes 12-16 minutes (kubectl adds one); the
# result is cached under $MESHWAF_CACHE keyed by version, so later runs print
# the paths at once.
#
# etcd comes from Debian's etcd-server (3.4; kube-apiserver 1.36 works with
# it). It is installed with apt-get when missing.
#
# Environment:
#   MESHWAF_CACHE         cache root (default ~/.cache/meshwaf)
#   MESHWAF_KUBE_VERSION  Kubernetes release (default 1.36.3; tests expect it)
#   MESHWAF_ETCD          use this etcd binary instead of Debian's
#   GO                    go command (default go)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/cache.sh"

version="${MESHWAF_KUBE_VERSION:-1.36.3}"
# Staging modules are tagged v0.<minor>.<patch> for release v1.<minor>.<patch>.
staging_version="v0.${version#*.}"
root="${cache}/kube-apiserver-v${version}"
bin="${root}/bin"
go="${GO:-go}"

sudo_cmd=()
[[ "$(id -u)" == 0 ]] || sudo_cmd=(sudo)

ensure_etcd() {
  if [[ -n "${MESHWAF_ETCD:-}" ]]; then
    [[ -x "${MESHWAF_ETCD}" ]] || die "MESHWAF_ETCD=${MESHWAF_ETCD} is not executable"
    etcd="${MESHWAF_ETCD}"
    return
  fi
  # Debian installs the server as /usr/bin/etcd; PATH may miss /usr/sbin-style
  # setups, so look in the package's place first.
  etcd=""
  if [[ -x /usr/bin/etcd ]]; then
    etcd=/usr/bin/etcd
  elif command -v etcd >/dev/null 2>&1; then
    etcd="$(command -v etcd)"
  else
    log "installing Debian etcd-server"
    # The harness runs its own etcd per test; the package's service (if an
    # init system starts it) is not used.
    "${sudo_cmd[@]}" apt-get update -qq >&2 || die "apt-get update failed"
    "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq --no-install-recommends etcd-server >&2 \
      || die "apt-get install etcd-server failed"
    [[ -x /usr/bin/etcd ]] || die "etcd-server installed but /usr/bin/etcd is missing"
    etcd=/usr/bin/etcd
  fi
  "${etcd}" --version >/dev/null 2>&1 || die "${etcd} --version failed"
}

print_paths() {
  printf 'MESHWAF_KUBE_APISERVER=%s\nMESHWAF_KUBECTL=%s\nMESHWAF_ETCD=%s\n' \
    "${bin}/kube-apiserver" "${bin}/kubectl" "${etcd}"
}

binaries_ok() {
  [[ -f "${root}/.meshwaf-complete" && -x "${bin}/kube-apiserver" && -x "${bin}/kubectl" ]]
}

ensure_etcd

if built_or_locked "${root}" binaries_ok; then
  print_paths
  exit 0
fi

command -v "${go}" >/dev/null 2>&1 || die "go not found"
start=$(date +%s)
log "building kube-apiserver and kubectl v${version} from the Go module proxy into ${bin} (12-16 min cold on 2 cores)"

src="${root}/src"
rm -rf "${src}" "${bin}"
mkdir -p "${src}/kube-apiserver" "${src}/kubectl" "${bin}"
cd "${src}"

# The build must not see the caller's module or workspace.
export GOWORK=off GOFLAGS=-mod=mod GO111MODULE=on

log "downloading k8s.io/kubernetes@v${version}"
download="$("${go}" mod download -json "k8s.io/kubernetes@v${version}" 2>&1)" \
  || die "go mod download k8s.io/kubernetes@v${version} failed: ${download}"
gomod="$(sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p' <<<"${download}")"
[[ -f "${gomod}" ]] || die "no go.mod for k8s.io/kubernetes@v${version} in: ${download}"

mapfile -t staging < <(sed -n 's#^[[:space:]]*\(k8s\.io/[a-z0-9-]*\) => \./staging/src/.*#\1#p' "${gomod}")
(( ${#staging[@]} > 20 )) || die "found only ${#staging[@]} staging modules in ${gomod}"

{
  echo "// Throwaway module written by meshwaf's scripts/install-kube.sh."
  echo "module meshwaf.local/kube-build"
  echo
  # Same language version and GODEBUG defaults as the upstream release.
  sed -n -e '/^go [0-9]/p' -e '/^godebug /p' "${gomod}"
  echo
  echo "require k8s.io/kubernetes v${version}"
  echo
  echo "replace ("
  for m in "${staging[@]}"; do echo "	${m} => ${m} ${staging_version}"; done
  echo ")"
} > go.mod

# Copies of upstream's cmd/kube-apiserver/apiserver.go and cmd/kubectl/kubectl.go.
cat > kube-apiserver/main.go <<'EOF'
package main

import (
	"os"
	_ "time/tzdata"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	command := app.NewAPIServerCommand()
	os.Exit(cli.Run(command))
}
EOF
cat > kubectl/main.go <<'EOF'
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/component-base/logs"
	"k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"

	_ "k8s.io/client-go/plugin/pkg/client/auth"
)

func main() {
	logs.GlogSetter(cmd.GetLogVerbosity(os.Args)) // nolint:errcheck
	command := cmd.NewDefaultKubectlCommand()
	if err := cli.RunNoErrOutput(command); err != nil {
		util.CheckErr(err)
	}
}
EOF

log "resolving dependencies (go mod tidy in ${src})"
"${go}" mod tidy >&2 || die "go mod tidy failed in ${src}"

# The version variables upstream's hack/lib/version.sh sets; without them the
# binaries report v0.0.0-master and kubectl warns about version skew.
minor="${version#*.}"; minor="${minor%%.*}"
ldflags="-s -w"
for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
  ldflags+=" -X ${pkg}.gitVersion=v${version} -X ${pkg}.gitMajor=1 -X ${pkg}.gitMinor=${minor}"
  ldflags+=" -X ${pkg}.gitTreeState=clean -X ${pkg}.buildDate=1970-01-01T00:00:00Z"
done

log "building kube-apiserver"
CGO_ENABLED=0 "${go}" build -trimpath -ldflags "${ldflags}" -o "${bin}/kube-apiserver" ./kube-apiserver >&2 \
  || die "go build kube-apiserver failed"
log "kube-apiserver built after $(( $(date +%s) - start ))s; building kubectl"
CGO_ENABLED=0 "${go}" build -trimpath -ldflags "${ldflags}" -o "${bin}/kubectl" ./kubectl >&2 \
  || die "go build kubectl failed"

"${bin}/kube-apiserver" --version >&2 || die "built kube-apiserver does not run"
"${bin}/kubectl" version --client >&2 || die "built kubectl does not run"
touch "${root}/.meshwaf-complete"
log "done in $(( $(date +%s) - start ))s"
print_paths
