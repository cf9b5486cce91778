# Sourced by the install scripts that build a heavy part once and keep it
# under $MESHWAF_CACHE, keyed by version.

cache="${MESHWAF_CACHE:-${HOME}/.cache/meshwaf}"

# Progress and errors go to stderr: stdout carries only the paths.
log() { echo "$(basename "$0" .sh): $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# built_or_locked ROOT CHECK: succeeds when CHECK (a command) says the part
# under ROOT is complete, waiting first for a build another run of the same
# script may be doing (parallel test packages). Otherwise it returns 1 with
# ROOT created and the lock held on file descriptor 9 until the script
# exits, so that the caller builds alone. The caller writes its completion
# marker last, so an interrupted build is never taken for a good one.
built_or_locked() {
  local root="$1" check="$2"
  "${check}" && return 0
  mkdir -p "${root}"
  if command -v flock >/dev/null 2>&1; then
    exec 9>"${root}.lock"
    flock 9
    "${check}" && return 0
  fi
  return 1
}
