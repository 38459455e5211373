#!/usr/bin/env bash
# build-kwok.sh builds kwok and kwokctl from the Go module proxy (release
# downloads are unreachable here), a sibling of build-k8s-binaries.sh.
#
#   hack/build-kwok.sh DEST_DIR
#
# The result is cached per version under the user cache directory (XDG_CACHE_HOME
# or ~/.cache)/envoymesh-operator, so a fresh clone on the same machine reuses it;
# DEST_DIR receives copies. The version comes from KWOK_VERSION.
#
# Two builds at once on one cache take turns on a lock (flock(1)); the build writes
# into a unique temporary directory and renames the binaries into place, so the
# second build waits for the first and then reuses its result.
set -euo pipefail

KWOK_VERSION=${KWOK_VERSION:-v0.8.0}

dest=$1
cache_root=${XDG_CACHE_HOME:-$HOME/.cache}/envoymesh-operator
out=$cache_root/bin/kwok-$KWOK_VERSION
mkdir -p "$dest" "$out"

source "$(dirname "${BASH_SOURCE[0]}")/lib/build.sh"

built() { [ -x "$out/kwok" ] && [ -x "$out/kwokctl" ]; }

# build runs under the lock on $out.lock (which also guards the source directory),
# so it first checks whether the build it waited for has made the binaries.
build() {
  if built; then return 0; fi
  log "building kwok and kwokctl $KWOK_VERSION from the module proxy (a few minutes when cold)"
  local dir=$cache_root/src/kwok-$KWOK_VERSION
  rm -rf "$dir"; mkdir -p "$dir"
  printf 'module envoymesh.local/kwokbuild\n\ngo 1.26\n' >"$dir/go.mod"
  local tmp; tmp=$(mktemp -d "$out.tmp.XXXXXX"); tmp_dirs+=("$tmp")
  (cd "$dir" &&
    GOFLAGS=-mod=mod go get "sigs.k8s.io/kwok@$KWOK_VERSION" >/dev/null 2>&1 &&
    GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -o "$tmp/" sigs.k8s.io/kwok/cmd/kwok sigs.k8s.io/kwok/cmd/kwokctl)
  mv -f "$tmp/kwok" "$tmp/kwokctl" "$out/"
}

if ! built; then locked "$out.lock" build; fi
install -m 0755 "$out/kwok" "$dest/kwok"
install -m 0755 "$out/kwokctl" "$dest/kwokctl"
