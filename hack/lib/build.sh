# Shared by the hack/build-*.sh scripts, which source it: logging, temporary
# directories removed on exit, and a lock per cached result.

log() { echo ">> $*" >&2; }

# Builds write into fresh directories made by mktemp next to their destination (so
# the final mv is a rename on one file system), listed in tmp_dirs and removed on exit.
tmp_dirs=()
cleanup() { if [ ${#tmp_dirs[@]} -gt 0 ]; then rm -rf "${tmp_dirs[@]}"; fi; }
trap cleanup EXIT

# locked LOCK COMMAND...: runs COMMAND (a function is fine) holding an exclusive
# flock(1) on the file LOCK, so that two builds at once (two clones, two CI jobs)
# take turns: the second waits, then finds the first one's result in the cache.
# Without flock(1) (not on macOS by default) it runs unlocked; the unique temporary
# names still keep two builds from breaking each other, they just both build.
locked() {
  local lock=$1; shift
  if ! command -v flock >/dev/null; then "$@"; return; fi
  (
    tmp_dirs=(); trap cleanup EXIT # this subshell's own temporary directories
    if ! flock -n 9; then
      log "waiting for another build holding $lock"
      flock 9
    fi
    "$@"
  ) 9>"$lock"
}
