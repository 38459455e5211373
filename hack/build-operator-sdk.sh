#!/usr/bin/env bash
# build-operator-sdk.sh builds the operator-sdk CLI from the Go module proxy,
# because release downloads are unreachable here.
#
#   hack/build-operator-sdk.sh DEST_FILE
#
# The version comes from OPERATOR_SDK_VERSION. The build happens in a throwaway
# module that requires only operator-sdk at that version, so its dependencies
# resolve exactly as upstream pinned them and never touch this repository's
# go.mod. Flags follow upstream's Makefile: CGO off, the containers_image_openpgp
# tag (no gpgme), and the version variables stamped, so that generated bundles
# carry "operators.operatorframework.io/builder: operator-sdk-<version>" rather
# than "operator-sdk-unknown". The binary is cached per version under the user
# cache directory (XDG_CACHE_HOME or ~/.cache); DEST_FILE receives a copy. Two
# builds at once on one cache take turns on a lock (flock(1)), so the second waits
# for the first and then reuses its result.
set -euo pipefail

OPERATOR_SDK_VERSION=${OPERATOR_SDK_VERSION:-v1.42.2}
# Kubernetes version upstream stamps into `operator-sdk version` for this release.
OPERATOR_SDK_K8S_VERSION=${OPERATOR_SDK_K8S_VERSION:-v1.33.1}

dest=$1
cache_root=${XDG_CACHE_HOME:-$HOME/.cache}/envoymesh-operator
out=$cache_root/bin/operator-sdk-$OPERATOR_SDK_VERSION/operator-sdk

source "$(dirname "${BASH_SOURCE[0]}")/lib/build.sh"

# build runs under the lock on $out.lock (which also guards the module directory), so
# it first checks whether the build it waited for has made the binary. It builds into
# a unique temporary directory and renames the binary into place.
build() {
  if [ -x "$out" ]; then return 0; fi
  local dir=$cache_root/src/operator-sdk-$OPERATOR_SDK_VERSION
  local mod=github.com/operator-framework/operator-sdk
  log "building operator-sdk $OPERATOR_SDK_VERSION from the module proxy (a few minutes when cold)"
  rm -rf "$dir"; mkdir -p "$dir"
  cat >"$dir/tools.go" <<'GO'
//go:build tools

package tools

import _ "github.com/operator-framework/operator-sdk/cmd/operator-sdk"
GO
  local pkg=$mod/internal/version ldflags
  ldflags="-X $pkg.Version=$OPERATOR_SDK_VERSION -X $pkg.GitVersion=$OPERATOR_SDK_VERSION"
  ldflags+=" -X $pkg.GitCommit=$(cd "$dir" && GOFLAGS=-mod=mod go mod download -json "$mod@$OPERATOR_SDK_VERSION" | sed -n 's/.*"Hash": "\(.*\)".*/\1/p')"
  ldflags+=" -X $pkg.KubernetesVersion=$OPERATOR_SDK_K8S_VERSION -X $pkg.ImageVersion=$OPERATOR_SDK_VERSION"
  local tmp; tmp=$(mktemp -d "$out.tmp.XXXXXX"); tmp_dirs+=("$tmp")
  (cd "$dir" &&
    go mod init envoymesh.local/operatorsdkbuild >/dev/null 2>&1 &&
    GOFLAGS=-mod=mod go get "$mod@$OPERATOR_SDK_VERSION" >/dev/null &&
    GOFLAGS=-mod=mod go mod tidy >/dev/null &&
    CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -tags containers_image_openpgp -ldflags "$ldflags" \
      -o "$tmp/operator-sdk" "$mod/cmd/operator-sdk")
  mv -f "$tmp/operator-sdk" "$out"
}

if [ ! -x "$out" ]; then
  mkdir -p "$(dirname "$out")"
  locked "$out.lock" build
fi
install -m 0755 "$out" "$dest"
