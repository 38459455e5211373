#!/usr/bin/env bash
# build-olm.sh builds OLM's two operators (olm, catalog) and opm from the Go module
# proxy in throwaway modules, pinned, cached per version under the user cache
# directory (XDG_CACHE_HOME or ~/.cache)/envoymesh-operator; DEST_DIR receives copies.
#
#   hack/build-olm.sh DEST_DIR
#
# Versions come from OLM_VERSION and OPM_VERSION. opm links go-sqlite3 (cgo), so it
# needs a C compiler; it is built with operator-registry's own tags (json1,
# containers_image_openpgp: the pure-Go OpenPGP instead of libgpgme).
set -euo pipefail

OLM_VERSION=${OLM_VERSION:-v0.46.0}
OPM_VERSION=${OPM_VERSION:-v1.74.0}

dest=$1
cache_root=${XDG_CACHE_HOME:-$HOME/.cache}/envoymesh-operator
mkdir -p "$dest"

# build MODULE VERSION NAME OUT_DIR CGO TAGS PACKAGE...
build() {
  local module=$1 version=$2 name=$3 out=$4 cgo=$5 tags=$6; shift 6
  local missing=0 p
  for p in "$@"; do [ -x "$out/$(basename "$p")" ] || missing=1; done
  if [ $missing = 1 ]; then
    echo ">> building $* from $module $version (module proxy; several minutes when cold)" >&2
    local dir=$cache_root/src/$name-$version
    mkdir -p "$dir" "$out"
    [ -f "$dir/go.mod" ] || printf 'module envoymesh.local/%sbuild\n\ngo 1.26\n' "$name" >"$dir/go.mod"
    (cd "$dir" &&
      GOFLAGS=-mod=mod go get "$module@$version" >/dev/null 2>&1 &&
      GOFLAGS=-mod=mod CGO_ENABLED=$cgo go build -trimpath -tags "$tags" -o "$out/" "$@")
  fi
  for p in "$@"; do install -m 0755 "$out/$(basename "$p")" "$dest/$(basename "$p")"; done
}

build github.com/operator-framework/operator-lifecycle-manager "$OLM_VERSION" olm \
  "$cache_root/bin/olm-$OLM_VERSION" 0 "" \
  github.com/operator-framework/operator-lifecycle-manager/cmd/olm \
  github.com/operator-framework/operator-lifecycle-manager/cmd/catalog
build github.com/operator-framework/operator-registry "$OPM_VERSION" opm \
  "$cache_root/bin/opm-$OPM_VERSION" 1 "json1 containers_image_openpgp" \
  github.com/operator-framework/operator-registry/cmd/opm
