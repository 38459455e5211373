#!/usr/bin/env bash
# olm.sh installs the operator through OLM on a local kwok cluster, with nothing
# pulled from a registry: OLM's CRDs come from the OLM module in the Go module
# cache, OLM's two operators (olm, catalog) run as local processes, and the
# catalog is a file-based catalog rendered from bundle/ (test/olm/fbc, objects
# inline, no bundle image) served by `opm serve` on this machine. The CatalogSource
# points at 127.0.0.1:OPM_PORT (sourceType grpc), so no registry pod is needed.
#
#   hack/olm.sh up         cluster (hack/local-cluster.sh up), OLM CRDs, olm, catalog, opm serve
#   hack/olm.sh subscribe  CatalogSource + OperatorGroup + Subscription for envoymesh-operator
#   hack/olm.sh down       stop everything and delete the state dir
#
# Binaries: BIN_DIR (cluster) and OLM_BIN_DIR (olm, catalog, opm; `make olm-binaries`).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
export BIN_DIR=${BIN_DIR:-$ROOT/bin/cluster}
export STATE_DIR=${STATE_DIR:-$ROOT/bin/state/olm}
export CLUSTER_NAME=${CLUSTER_NAME:-envoymesh-olm}
export POD_CIDR=${POD_CIDR:-127.3.0.0/16}
OLM_BIN_DIR=${OLM_BIN_DIR:-$ROOT/bin/olm}
OLM_VERSION=${OLM_VERSION:-v0.46.0}
OPM_PORT=${OPM_PORT:-50151}
INSTALL_NAMESPACE=${INSTALL_NAMESPACE:-envoymesh-system}
KUBECONFIG_PATH=$STATE_DIR/kubeconfig
LOG_DIR=$STATE_DIR/logs

log() { echo ">> $*" >&2; }
kubectl() { "$BIN_DIR/kubectl" --kubeconfig "$KUBECONFIG_PATH" "$@"; }

start() {
  local name=$1; shift
  if [ -f "$STATE_DIR/$name.pid" ] && kill -0 "$(cat "$STATE_DIR/$name.pid")" 2>/dev/null; then return; fi
  setsid "$@" >>"$LOG_DIR/$name.log" 2>&1 </dev/null &
  echo $! >"$STATE_DIR/$name.pid"
  log "started $name (pid $!, log $LOG_DIR/$name.log)"
}

stop() {
  local name=$1 pid
  [ -f "$STATE_DIR/$name.pid" ] || return 0
  pid=$(cat "$STATE_DIR/$name.pid")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$STATE_DIR/$name.pid"
}

up() {
  "$ROOT/hack/local-cluster.sh" up
  mkdir -p "$LOG_DIR"
  local crds
  crds=$(cd "$ROOT" && go env GOMODCACHE)/github.com/operator-framework/operator-lifecycle-manager@$OLM_VERSION/deploy/chart/crds
  [ -d "$crds" ] || (cd "$ROOT" && go mod download "github.com/operator-framework/operator-lifecycle-manager@$OLM_VERSION" >/dev/null 2>&1) || true
  [ -d "$crds" ] || { echo "OLM $OLM_VERSION is not in the module cache (run make olm-binaries)" >&2; exit 1; }
  log "installing OLM $OLM_VERSION CRDs from $crds"
  kubectl apply --server-side --force-conflicts -f "$crds" >/dev/null
  for crd in $(ls "$crds" | sed -n 's/^0000_50_olm_00-\(.*\)\.crd\.yaml$/\1.operators.coreos.com/p'); do
    for _ in $(seq 120); do
      [ "$(kubectl get crd "$crd" -o jsonpath='{.status.conditions[?(@.type=="Established")].status}' 2>/dev/null)" = True ] && break
      sleep 0.5
    done
  done
  kubectl create namespace olm --dry-run=client -o yaml | kubectl apply --server-side -f - >/dev/null

  log "rendering a file-based catalog from bundle/ (objects inline, no bundle image)"
  rm -rf "$STATE_DIR/catalog" && mkdir -p "$STATE_DIR/catalog"
  (cd "$ROOT" && go run ./test/olm/fbc -bundle bundle -out "$STATE_DIR/catalog/envoymesh-operator") >&2

  start opm "$OLM_BIN_DIR/opm" serve "$STATE_DIR/catalog" --port "$OPM_PORT" \
    --termination-log "$LOG_DIR/opm-termination.log" --pprof-addr 127.0.0.1:0
  # Both operators would serve health and metrics on :8080; the catalog operator
  # only logs the clash. Neither is used here.
  start olm-operator env KUBECONFIG="$KUBECONFIG_PATH" "$OLM_BIN_DIR/olm" --namespace olm --writeStatusName ""
  start catalog-operator "$OLM_BIN_DIR/catalog" --kubeconfig "$KUBECONFIG_PATH" --namespace olm --writeStatusName ""
}

subscribe() {
  log "subscribing to envoymesh-operator from the CatalogSource at 127.0.0.1:$OPM_PORT (namespace $INSTALL_NAMESPACE)"
  kubectl apply --server-side -f - >/dev/null <<EOF
apiVersion: operators.coreos.com/v1alpha1
kind: CatalogSource
metadata:
  name: envoymesh-local
  namespace: olm
spec:
  sourceType: grpc
  address: 127.0.0.1:$OPM_PORT
  displayName: envoymesh local catalog
---
apiVersion: v1
kind: Namespace
metadata:
  name: $INSTALL_NAMESPACE
---
apiVersion: operators.coreos.com/v1
kind: OperatorGroup
metadata:
  name: envoymesh
  namespace: $INSTALL_NAMESPACE
spec: {}
---
apiVersion: operators.coreos.com/v1alpha1
kind: Subscription
metadata:
  name: envoymesh-operator
  namespace: $INSTALL_NAMESPACE
spec:
  name: envoymesh-operator
  channel: alpha
  source: envoymesh-local
  sourceNamespace: olm
  installPlanApproval: Automatic
EOF
}

down() {
  stop catalog-operator
  stop olm-operator
  stop opm
  "$ROOT/hack/local-cluster.sh" down
}

cmd=${1:-}; shift || true
case $cmd in
  up) up ;;
  subscribe) subscribe ;;
  down) down ;;
  *) sed -n '2,13p' "$0" >&2; exit 2 ;;
esac
