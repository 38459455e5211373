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

source "$(dirname "${BASH_SOURCE[0]}")/lib/build.sh"

# missing OUT_DIR PACKAGE... succeeds when a package's binary is not cached yet.
missing() {
  local out=$1 p; shift
  for p in "$@"; do [ -x "$out/$(basename "$p")" ] || return 0; done
  return 1
}

# build MODULE VERSION NAME OUT_DIR CGO TAGS PACKAGE...
#
# Two builds at once on one cache take turns on a lock per OUT_DIR (flock(1)), which
# also guards the module directory; binaries are built into a unique temporary
# directory and renamed into place, so the second build waits for the first and
# then reuses its result.
build() {
  local out=$4 p
  mkdir -p "$out"
  if missing "$out" "${@:7}"; then
    locked "$out.lock" build_locked "$@"
  fi
  for p in "${@:7}"; do install -m 0755 "$out/$(basename "$p")" "$dest/$(basename "$p")"; done
}

build_locked() {
  local module=$1 version=$2 name=$3 out=$4 cgo=$5 tags=$6; shift 6
  missing "$out" "$@" || return 0
  log "building $* from $module $version (module proxy; several minutes when cold)"
  local dir=$cache_root/src/$name-$version tmp p
  mkdir -p "$dir"
  [ -f "$dir/go.mod" ] || printf 'module envoymesh.local/%sbuild\n\ngo 1.26\n' "$name" >"$dir/go.mod"
  tmp=$(mktemp -d "$out.tmp.XXXXXX"); tmp_dirs+=("$tmp")
  (cd "$dir" &&
    GOFLAGS=-mod=mod go get "$module@$version" >/dev/null 2>&1 &&
    GOFLAGS=-mod=mod CGO_ENABLED=$cgo go build -trimpath -tags "$tags" -o "$tmp/" "$@")
  for p in "$@"; do mv -f "$tmp/$(basename "$p")" "$out/"; done
}

build github.com/operator-framework/operator-lifecycle-manager "$OLM_VERSION" olm \
  "$cache_root/bin/olm-$OLM_VERSION" 0 "" \
  github.com/operator-framework/operator-lifecycle-manager/cmd/olm \
  github.com/operator-framework/operator-lifecycle-manager/cmd/catalog
build github.com/operator-framework/operator-registry "$OPM_VERSION" opm \
  "$cache_root/bin/opm-$OPM_VERSION" 1 "json1 containers_image_openpgp" \
  github.com/operator-framework/operator-registry/cmd/opm
