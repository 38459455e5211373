#!/usr/bin/env bash
# local-cluster.sh runs the local kwok cluster of `make demo` and `make test-e2e`:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok as local
# processes (kwokctl's binary runtime, nothing downloaded), one fake node whose
# podCIDR is on loopback so pods get 127.x addresses, the operator (bin/manager),
# the sidecar test double (bin/sidecardouble) and the kubelet's Pod Certificate test
# double (bin/kubeletdouble) as local processes.
#
#   hack/local-cluster.sh up                    create the cluster and its node
#   hack/local-cluster.sh install               server-side apply the CRDs, create the operator's namespace
#   hack/local-cluster.sh start-operator        start bin/manager (pid and log in the state dir)
#   hack/local-cluster.sh stop-operator         SIGKILL the operator started above
#   hack/local-cluster.sh start-double          start bin/sidecardouble
#   hack/local-cluster.sh stop-double           stop it
#   hack/local-cluster.sh start-kubelet-double  start bin/kubeletdouble for kwok-node-0 (volumes in STATE_DIR/kubelet)
#   hack/local-cluster.sh stop-kubelet-double   stop it
#   hack/local-cluster.sh seed NAMESPACE        apply config/samples into a restricted namespace and wait
#   hack/local-cluster.sh demo                  all of the above, then print where to look
#   hack/local-cluster.sh down                  stop everything started here and delete the state dir
#
# Binaries are expected in BIN_DIR (the Makefile's cluster-binaries target puts them
# there). Everything the cluster writes lives in STATE_DIR, so `down` removes all of it.
# Two clusters (the demo and the e2e suite) can run at once when they differ in
# STATE_DIR, CLUSTER_NAME, POD_CIDR, DOUBLE_CONTROL_ADDRESS and XDS_ADDRESS.
# DELIVERY=XDS seeds the mesh with spec.delivery XDS (default ConfigMap): the manager's
# ADS server on XDS_ADDRESS (default 127.0.0.1:18000) pushes the config to the double's
# Envoys.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN_DIR=${BIN_DIR:-$ROOT/bin/cluster}
STATE_DIR=${STATE_DIR:-$ROOT/bin/state/demo}
CLUSTER_NAME=${CLUSTER_NAME:-envoymesh-demo}
POD_CIDR=${POD_CIDR:-127.1.0.0/16}
K8S_VERSION=${K8S_VERSION:-v1.37.2}
DOUBLE_CONTROL_ADDRESS=${DOUBLE_CONTROL_ADDRESS:-127.0.0.1:15020}
METRICS_ADDRESS=${METRICS_ADDRESS:-0}
HEALTH_ADDRESS=${HEALTH_ADDRESS:-0}
PROBE_INTERVAL=${PROBE_INTERVAL:-2s}
DEMO_NAMESPACE=${DEMO_NAMESPACE:-envoymesh-demo}
OPERATOR_NAMESPACE=${OPERATOR_NAMESPACE:-envoymesh-system}
# The demo elects a leader as an installed operator does (kubectl envoymesh check
# reads the Lease); the e2e suite turns it off so a killed operator's successor
# need not wait out the Lease.
LEADER_ELECT=${LEADER_ELECT:-true}
WAIT_TIMEOUT=${WAIT_TIMEOUT:-300s}
# The manager's ADS server (docs/xds.md) listens on loopback, where the double's
# Envoys dial it: the bootstraps of XDS meshes name this host and port instead of
# the in-cluster Service, and the server's certificate names the ServiceAccount an
# installed manager runs as (config/manager, with the envoymesh- prefix).
XDS_ADDRESS=${XDS_ADDRESS:-127.0.0.1:18000}
XDS_SERVICE_ACCOUNT=${XDS_SERVICE_ACCOUNT:-envoymesh-controller-manager}
# How the seed mesh gets its config: ConfigMap (files) or XDS (spec.delivery).
DELIVERY=${DELIVERY:-ConfigMap}

KUBECONFIG_PATH=$STATE_DIR/kubeconfig
LOG_DIR=$STATE_DIR/logs
export KWOK_WORKDIR=$STATE_DIR/kwok
export KWOK_KUBE_VERSION=$K8S_VERSION
export KWOK_KUBECTL_BINARY=$BIN_DIR/kubectl
export PATH=$BIN_DIR:$PATH

log() { echo ">> $*" >&2; }
kubectl() { "$BIN_DIR/kubectl" --kubeconfig "$KUBECONFIG_PATH" "$@"; }

up() {
  mkdir -p "$STATE_DIR" "$LOG_DIR"
  if [ -f "$KUBECONFIG_PATH" ] && kubectl get --raw /readyz >/dev/null 2>&1; then
    log "cluster $CLUSTER_NAME already running ($KUBECONFIG_PATH)"
    return
  fi
  log "creating kwok cluster $CLUSTER_NAME (binary runtime, state in $STATE_DIR)"
  # Only the five core components run: prometheus, jaeger, metrics-server and the
  # dashboard are off by default and would need downloads.
  "$BIN_DIR/kwokctl" --name "$CLUSTER_NAME" create cluster \
    --runtime binary \
    --etcd-binary "$BIN_DIR/etcd" \
    --kube-apiserver-binary "$BIN_DIR/kube-apiserver" \
    --kube-controller-manager-binary "$BIN_DIR/kube-controller-manager" \
    --kube-scheduler-binary "$BIN_DIR/kube-scheduler" \
    --kwok-controller-binary "$BIN_DIR/kwok" \
    --secure-port=true --kube-authorization=true --kube-admission=true \
    --disable-qps-limits \
    --extra-args kube-controller-manager=bind-address=127.0.0.1 \
    --extra-args kube-scheduler=bind-address=127.0.0.1 \
    --kubeconfig "$KUBECONFIG_PATH" \
    --wait 3m >"$LOG_DIR/kwokctl-create.log" 2>&1 || { cat "$LOG_DIR/kwokctl-create.log" >&2; exit 1; }
  log "adding fake node kwok-node-0 with podCIDR $POD_CIDR (pods get loopback IPs)"
  kubectl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-0
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    kubernetes.io/arch: amd64
    kubernetes.io/hostname: kwok-node-0
    kubernetes.io/os: linux
    kubernetes.io/role: agent
    type: kwok
spec:
  podCIDR: $POD_CIDR
  podCIDRs: [$POD_CIDR]
status:
  allocatable: {cpu: "32", memory: 256Gi, ephemeral-storage: 256Gi, pods: "250"}
  capacity: {cpu: "32", memory: 256Gi, ephemeral-storage: 256Gi, pods: "250"}
  nodeInfo:
    architecture: amd64
    kubeProxyVersion: fake
    kubeletVersion: fake
    operatingSystem: linux
EOF
  kubectl wait --for=condition=Ready node/kwok-node-0 --timeout=60s >/dev/null
}

install_crds() {
  log "installing the CRDs (server-side apply: the MeshService CRD is ~650KB)"
  kubectl apply --server-side --force-conflicts -f "$ROOT/config/crd/bases" >/dev/null
  # Not `kubectl wait`: it fails while a fresh CRD has no status.conditions yet.
  local crd
  for crd in meshservices.mesh.envoymesh.io servicemeshes.mesh.envoymesh.io; do
    for _ in $(seq 120); do
      [ "$(kubectl get crd "$crd" -o jsonpath='{.status.conditions[?(@.type=="Established")].status}' 2>/dev/null)" = True ] && break
      sleep 0.5
    done
  done
  kubectl wait --for=condition=Established --timeout=30s \
    crd/meshservices.mesh.envoymesh.io crd/servicemeshes.mesh.envoymesh.io >/dev/null
  # The operator's own namespace (POD_NAMESPACE), as in a real install.
  kubectl create namespace "$OPERATOR_NAMESPACE" --dry-run=client -o yaml | kubectl apply --server-side -f - >/dev/null
}

# start NAME CMD... runs CMD in its own session with its output in LOG_DIR/NAME.log
# and its pid in STATE_DIR/NAME.pid.
start() {
  local name=$1; shift
  mkdir -p "$LOG_DIR"
  if [ -f "$STATE_DIR/$name.pid" ] && kill -0 "$(cat "$STATE_DIR/$name.pid")" 2>/dev/null; then
    log "$name already running (pid $(cat "$STATE_DIR/$name.pid"))"
    return
  fi
  setsid "$@" >>"$LOG_DIR/$name.log" 2>&1 </dev/null &
  echo $! >"$STATE_DIR/$name.pid"
  log "started $name (pid $!, log $LOG_DIR/$name.log)"
}

stop() {
  local name=$1 sig=${2:-TERM} pid
  [ -f "$STATE_DIR/$name.pid" ] || return 0
  pid=$(cat "$STATE_DIR/$name.pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill "-$sig" "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$STATE_DIR/$name.pid"
}

start_operator() {
  local xds_host=${XDS_ADDRESS%:*} xds_port=${XDS_ADDRESS##*:}
  case $xds_host in
    127.*) ;;
    *) echo "XDS_ADDRESS=$XDS_ADDRESS: the ADS server must listen on a 127.0.0.0/8 address" >&2; exit 2 ;;
  esac
  start manager env KUBECONFIG="$KUBECONFIG_PATH" POD_NAMESPACE="$OPERATOR_NAMESPACE" "$ROOT/bin/manager" \
    --metrics-bind-address="$METRICS_ADDRESS" --health-probe-bind-address="$HEALTH_ADDRESS" \
    --probe-interval="$PROBE_INTERVAL" --leader-elect="$LEADER_ELECT" \
    --xds-bind-address="$XDS_ADDRESS" --xds-host="$xds_host" --xds-port="$xds_port" \
    --xds-service-account="$XDS_SERVICE_ACCOUNT"
}

start_double() {
  # --kubelet-dir: the double's /certs reports the certificate the kubelet double wrote,
  # and its Envoys in XDS meshes present it to the manager's ADS server.
  # --endpointslices: kube-apiserver refuses the real EndpointSlice controller's
  # loopback pod IPs, so the double writes the slices (addresses mapped to
  # 198.18.0.0/15, never dialed) from which the operator builds XDS meshes' EDS.
  start sidecardouble "$ROOT/bin/sidecardouble" --kubeconfig "$KUBECONFIG_PATH" \
    --control-address "$DOUBLE_CONTROL_ADDRESS" --kubelet-dir "$STATE_DIR/kubelet" --endpointslices
}

# The kubelet's Pod Certificate half for the fake node: PodCertificateRequests and the
# podCertificate/clusterTrustBundle volumes kwok does not handle.
start_kubelet_double() {
  mkdir -p "$STATE_DIR/kubelet"
  start kubeletdouble "$ROOT/bin/kubeletdouble" --kubeconfig "$KUBECONFIG_PATH" \
    --node-name kwok-node-0 --dir "$STATE_DIR/kubelet"
}

seed() {
  local ns=$1
  log "applying config/samples (the seed mesh) into namespace $ns (pod-security enforce=restricted)"
  kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply --server-side -f - >/dev/null
  kubectl label --overwrite namespace "$ns" \
    pod-security.kubernetes.io/enforce=restricted pod-security.kubernetes.io/enforce-version=latest >/dev/null
  case $DELIVERY in
    ConfigMap|XDS) ;;
    *) echo "DELIVERY=$DELIVERY: want ConfigMap or XDS" >&2; exit 2 ;;
  esac
  # The seed's ServiceMesh (config/samples names it "default") gets its delivery
  # before its services exist, so their pods start with the right bootstrap; a field
  # manager of its own keeps the field when the samples are applied again.
  log "delivery of mesh default: $DELIVERY"
  kubectl apply --server-side --field-manager=envoymesh-seed-delivery -n "$ns" -f - >/dev/null <<EOF
apiVersion: mesh.envoymesh.io/v1alpha1
kind: ServiceMesh
metadata:
  name: default
spec:
  delivery: $DELIVERY
EOF
  kubectl apply --server-side -n "$ns" -k "$ROOT/config/samples" >/dev/null
  log "waiting for every MeshService to be Ready and ConfigSynced (timeout $WAIT_TIMEOUT)"
  kubectl wait -n "$ns" --for=condition=Ready --timeout="$WAIT_TIMEOUT" meshservices --all >/dev/null
  kubectl wait -n "$ns" --for=condition=ConfigSynced --timeout="$WAIT_TIMEOUT" meshservices --all >/dev/null
  kubectl wait -n "$ns" --for=condition=Ready --timeout="$WAIT_TIMEOUT" servicemeshes --all >/dev/null
}

demo() {
  local t0=$SECONDS
  up
  install_crds
  start_operator
  start_double
  start_kubelet_double
  seed "$DEMO_NAMESPACE"
  echo
  kubectl get -n "$DEMO_NAMESPACE" meshservices,servicemeshes
  echo
  kubectl get -n "$DEMO_NAMESPACE" pods -o wide
  cat <<EOF

The seed mesh is up ($((SECONDS - t0))s). Look around:

  export KUBECONFIG=$KUBECONFIG_PATH
  $BIN_DIR/kubectl get -n $DEMO_NAMESPACE ms,smesh,deploy,svc,cm,pods -o wide
  $BIN_DIR/kubectl describe -n $DEMO_NAMESPACE ms/service-a      # conditions, identity, sidecars, events
  $BIN_DIR/kubectl get -n $DEMO_NAMESPACE podcertificaterequests    # the sidecars' certificates, signed by the operator
  $BIN_DIR/kubectl get clustertrustbundles                          # the mesh's CA, as every pod trusts it
  $BIN_DIR/kubectl get -n $DEMO_NAMESPACE cm/service-a-envoy -o yaml  # the generated Envoy config
  curl -s http://$DOUBLE_CONTROL_ADDRESS/sidecars            # what the sidecar double serves
  curl -X PUT 'http://$DOUBLE_CONTROL_ADDRESS/denials/$DEMO_NAMESPACE/service-b?count=3'  # make service-b's sidecar report denials

Delivery: $DELIVERY (DELIVERY=XDS make demo: pushed by the manager's ADS server on $XDS_ADDRESS). With XDS:
  $BIN_DIR/kubectl get -n $DEMO_NAMESPACE ms/service-a -o jsonpath='{.status.proxies[*].xds}'  # each proxy's ADS stream
  curl -X PUT 'http://$DOUBLE_CONTROL_ADDRESS/nack/$DEMO_NAMESPACE/service-a?message=bad+listener'  # service-a NACKs its next version

Pod volumes written by the kubelet double: $STATE_DIR/kubelet/<podUID>/volumes/

Logs: $LOG_DIR/manager.log (operator), $LOG_DIR/sidecardouble.log, $LOG_DIR/kubeletdouble.log,
      $KWOK_WORKDIR/clusters/$CLUSTER_NAME/logs/ (etcd, kube-apiserver, ...)
Stop everything with: make demo-down
EOF
}

down() {
  stop kubeletdouble
  stop sidecardouble
  stop manager
  if [ -x "$BIN_DIR/kwokctl" ] && [ -d "$KWOK_WORKDIR/clusters/$CLUSTER_NAME" ]; then
    log "deleting kwok cluster $CLUSTER_NAME"
    "$BIN_DIR/kwokctl" --name "$CLUSTER_NAME" delete cluster >/dev/null 2>&1 || true
  fi
  rm -rf "$STATE_DIR"
}

cmd=${1:-}; shift || true
case $cmd in
  up) up ;;
  install) install_crds ;;
  start-operator) start_operator ;;
  stop-operator) stop manager KILL ;;
  start-double) start_double ;;
  stop-double) stop sidecardouble ;;
  start-kubelet-double) start_kubelet_double ;;
  stop-kubelet-double) stop kubeletdouble ;;
  seed) seed "${1:-$DEMO_NAMESPACE}" ;;
  demo) demo ;;
  down) down ;;
  *) sed -n '2,27p' "$0" >&2; exit 2 ;;
esac
