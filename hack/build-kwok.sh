#!/usr/bin/env bash
# build-kwok.sh builds kwok and kwokctl from the Go module proxy (release
# downloads are unreachable here), a sibling of build-k8s-binaries.sh.
#
#   hack/build-kwok.sh DEST_DIR
#
# The result is cached per version under the user cache directory (XDG_CACHE_HOME
# or ~/.cache)/envoymesh-operator, so a fresh clone on the same machine reuses it;
# DEST_DIR receives copies. The version comes from KWOK_VERSION.
set -euo pipefail

KWOK_VERSION=${KWOK_VERSION:-v0.8.0}

dest=$1
cache_root=${XDG_CACHE_HOME:-$HOME/.cache}/envoymesh-operator
out=$cache_root/bin/kwok-$KWOK_VERSION
mkdir -p "$dest" "$out"

if [ ! -x "$out/kwok" ] || [ ! -x "$out/kwokctl" ]; then
  echo ">> building kwok and kwokctl $KWOK_VERSION from the module proxy (a few minutes when cold)" >&2
  dir=$cache_root/src/kwok-$KWOK_VERSION
  rm -rf "$dir"; mkdir -p "$dir"
  printf 'module envoymesh.local/kwokbuild\n\ngo 1.26\n' >"$dir/go.mod"
  (cd "$dir" &&
    GOFLAGS=-mod=mod go get "sigs.k8s.io/kwok@$KWOK_VERSION" >/dev/null 2>&1 &&
    GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -o "$out/" sigs.k8s.io/kwok/cmd/kwok sigs.k8s.io/kwok/cmd/kwokctl)
fi
install -m 0755 "$out/kwok" "$dest/kwok"
install -m 0755 "$out/kwokctl" "$dest/kwokctl"
