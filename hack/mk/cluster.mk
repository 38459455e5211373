##@ Local cluster

# The local cluster (docs/local-cluster.md): kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, etcd, kwok and kwokctl, all built from the Go module proxy
# and cached per version under ~/.cache/envoymesh-operator, copied into bin/cluster.
# The cluster's own files live in bin/state/demo (demo) and bin/state/e2e (e2e suite).
KWOK_VERSION ?= v0.8.0
CLUSTER_BIN ?= $(shell pwd)/bin/cluster
CLUSTER_BINARIES = etcd kube-apiserver kube-controller-manager kube-scheduler kubectl
E2E_TIMEOUT ?= 30m
E2E_ARGS ?=
# The demo's seed mesh: DELIVERY=XDS make demo gives it spec.delivery XDS, its config
# pushed by the manager's ADS server on XDS_ADDRESS (loopback); ConfigMap (files) by default.
DELIVERY ?= ConfigMap
XDS_ADDRESS ?= 127.0.0.1:18000

.PHONY: cluster-binaries
cluster-binaries: ## Build the local cluster's binaries, the manager and the sidecar test double (cached; cold: see docs/local-cluster.md).
	@missing=""; for b in $(CLUSTER_BINARIES) kwok kwokctl; do [ -x $(CLUSTER_BIN)/$$b ] || missing="$$missing $$b"; done; \
	if [ -n "$$missing" ]; then echo ">> cluster binaries to build or copy from the cache:$$missing"; fi
	@for b in $(CLUSTER_BINARIES); do [ -x $(CLUSTER_BIN)/$$b ] || \
		K8S_VERSION=$(K8S_VERSION) K8S_STAGING_VERSION=$(K8S_STAGING_VERSION) ETCD_VERSION=$(ETCD_VERSION) \
		hack/build-k8s-binaries.sh $(CLUSTER_BIN) $$b; done
	@[ -x $(CLUSTER_BIN)/kwok -a -x $(CLUSTER_BIN)/kwokctl ] || KWOK_VERSION=$(KWOK_VERSION) hack/build-kwok.sh $(CLUSTER_BIN)
	@echo ">> building bin/manager, bin/sidecardouble, bin/kubeletdouble and bin/kubectl-envoymesh"
	go build -o bin/manager .
	go build -o bin/sidecardouble ./test/sidecardouble
	go build -o bin/kubeletdouble ./test/kubeletdouble
	go build -o bin/kubectl-envoymesh ./cmd/kubectl-envoymesh

.PHONY: demo
demo: cluster-binaries ## Start a local kwok cluster running the operator and the seed mesh (DELIVERY=XDS: over xDS); leaves it running (see `make demo-down`).
	BIN_DIR=$(CLUSTER_BIN) K8S_VERSION=$(K8S_VERSION) DELIVERY=$(DELIVERY) XDS_ADDRESS=$(XDS_ADDRESS) hack/local-cluster.sh demo

.PHONY: demo-down
demo-down: ## Stop the demo's operator, sidecar double and cluster, and delete bin/state/demo.
	BIN_DIR=$(CLUSTER_BIN) hack/local-cluster.sh down

.PHONY: test-e2e
test-e2e: cluster-binaries ## Run the end-to-end suite against a fresh local cluster (started and removed by the suite).
	BIN_DIR=$(CLUSTER_BIN) K8S_VERSION=$(K8S_VERSION) go test -tags e2e ./test/e2e -count=1 -timeout $(E2E_TIMEOUT) -v -ginkgo.v $(E2E_ARGS)

# OLM (docs/local-cluster.md, "OLM"): OLM's operators and opm, built from the module proxy.
OLM_VERSION ?= v0.46.0
OPM_VERSION ?= v1.74.0
OLM_BIN ?= $(shell pwd)/bin/olm

.PHONY: olm-binaries
olm-binaries: ## Build OLM's olm and catalog operators and opm from the module proxy (cached).
	@[ -x $(OLM_BIN)/olm -a -x $(OLM_BIN)/catalog -a -x $(OLM_BIN)/opm ] || \
		OLM_VERSION=$(OLM_VERSION) OPM_VERSION=$(OPM_VERSION) hack/build-olm.sh $(OLM_BIN)

.PHONY: test-olm
test-olm: cluster-binaries olm-binaries ## Install the bundle through OLM on a fresh local cluster: catalog, Subscription, InstallPlan, CSV Succeeded.
	BIN_DIR=$(CLUSTER_BIN) OLM_BIN_DIR=$(OLM_BIN) OLM_VERSION=$(OLM_VERSION) K8S_VERSION=$(K8S_VERSION) \
		go test -tags olm ./test/olm -count=1 -timeout $(E2E_TIMEOUT) -v -ginkgo.v
