#!/usr/bin/env bash
# build-k8s-binaries.sh builds Kubernetes and etcd binaries from the Go module
# proxy, because release downloads (setup-envtest's store) are unreachable here.
#
#   hack/build-k8s-binaries.sh DEST_DIR BINARY...
#
# BINARY is one of kube-apiserver, kube-controller-manager, kube-scheduler,
# kubectl, etcd. Results are cached per version under the user cache directory
# (XDG_CACHE_HOME or ~/.cache), so a fresh clone on the same machine reuses
# them; DEST_DIR receives copies. Versions come from K8S_VERSION, K8S_STAGING_VERSION
# and ETCD_VERSION.
#
# Several builds may run at once on one cache (two clones, two CI jobs): each cached
# binary and the shared build module have a lock (flock(1)), builds write under
# unique temporary names and rename into place, so the second build waits for the
# first and then reuses its result.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.37.2}
K8S_STAGING_VERSION=${K8S_STAGING_VERSION:-v0.37.2}
ETCD_VERSION=${ETCD_VERSION:-v3.6.7}

dest=$1; shift
cache_root=${XDG_CACHE_HOME:-$HOME/.cache}/envoymesh-operator
mkdir -p "$dest"

source "$(dirname "${BASH_SOURCE[0]}")/lib/build.sh"

# prepare_k8s_module DIR writes the build module in a temporary directory and renames
# it to DIR, so DIR is either absent or whole. Called under DIR's lock.
prepare_k8s_module() {
  local dir=$1
  if [ -f "$dir/go.sum" ]; then return 0; fi
  log "preparing build module for k8s.io/kubernetes $K8S_VERSION"
  local tmp gomod
  tmp=$(mktemp -d "$dir.tmp.XXXXXX"); tmp_dirs+=("$tmp")
  gomod=$(cd "$tmp" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  {
    echo "module envoymesh.local/k8sbuild"
    echo "go 1.26"
    echo "require k8s.io/kubernetes $K8S_VERSION"
    grep -Eo '^\s*k8s\.io/[a-z0-9-]+ => \./staging' "$gomod" | awk -v v="$K8S_STAGING_VERSION" '{print "replace " $1 " => " $1 " " v}'
  } >"$tmp/go.mod"
  (cd "$tmp" && echo 'package main' >tools.go && GOFLAGS=-mod=mod go mod tidy >/dev/null 2>&1 || true)
  rm -f "$tmp/tools.go"
  # An incomplete DIR (an earlier build killed midway) is only ever touched under
  # this lock, so it can go.
  rm -rf "$dir"
  mv "$tmp" "$dir"
}

build_k8s() {
  local name=$1 out=$cache_root/bin/k8s-$K8S_VERSION-stamped/$1
  if [ ! -x "$out" ]; then locked "$out.lock" build_k8s_locked "$name" "$out"; fi
  install -m 0755 "$out" "$dest/$name"
}

# build_k8s_locked NAME OUT builds into a unique temporary directory next to OUT and
# renames the result to OUT. Called under OUT's lock, so it first checks whether the
# build it waited for has made OUT.
build_k8s_locked() {
  local name=$1 out=$2
  if [ -x "$out" ]; then return 0; fi
  local dir=$cache_root/src/k8s-$K8S_VERSION
  if [ ! -f "$dir/go.sum" ]; then locked "$dir.lock" prepare_k8s_module "$dir"; fi
  log "building $name $K8S_VERSION from the module proxy (several minutes when cold)"
  # Stamp the version as the release build does: clients such as OLM compare it
  # with minKubeVersion, and an unstamped build reports v0.0.0-master.
  local major minor ldflags="" pkg tmp
  major=${K8S_VERSION#v}; major=${major%%.*}
  minor=${K8S_VERSION#v*.}; minor=${minor%%.*}
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  done
  tmp=$(mktemp -d "$out.tmp.XXXXXX"); tmp_dirs+=("$tmp")
  (cd "$dir" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$tmp/$name" "k8s.io/kubernetes/cmd/$name")
  mv -f "$tmp/$name" "$out"
}

build_etcd() {
  local out=$cache_root/bin/etcd-$ETCD_VERSION/etcd
  if [ ! -x "$out" ]; then locked "$out.lock" build_etcd_locked "$out"; fi
  install -m 0755 "$out" "$dest/etcd"
}

# build_etcd_locked OUT, under OUT's lock, which also guards the etcd source dir.
build_etcd_locked() {
  local out=$1
  if [ -x "$out" ]; then return 0; fi
  local dir=$cache_root/src/etcd-$ETCD_VERSION tmp
  log "building etcd $ETCD_VERSION from the module proxy"
  rm -rf "$dir"; mkdir -p "$dir"
  cat >"$dir/main.go" <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  tmp=$(mktemp -d "$out.tmp.XXXXXX"); tmp_dirs+=("$tmp")
  (cd "$dir" && go mod init envoymesh.local/etcdbuild >/dev/null 2>&1 &&
    GOFLAGS=-mod=mod go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >/dev/null 2>&1 &&
    GOFLAGS=-mod=mod go mod tidy >/dev/null 2>&1 &&
    CGO_ENABLED=0 go build -trimpath -o "$tmp/etcd" .)
  mv -f "$tmp/etcd" "$out"
}

mkdir -p "$cache_root/bin/k8s-$K8S_VERSION-stamped" "$cache_root/bin/etcd-$ETCD_VERSION" "$cache_root/src"
for b in "$@"; do
  case $b in
    etcd) build_etcd ;;
    kube-apiserver|kube-controller-manager|kube-scheduler|kubectl) build_k8s "$b" ;;
    *) echo "unknown binary $b" >&2; exit 2 ;;
  esac
done
