# Image URL to use all building/pushing image targets.
VERSION ?= 0.1.0
IMAGE_TAG_BASE ?= ghcr.io/envoymesh/envoymesh-operator
IMG ?= $(IMAGE_TAG_BASE):v$(VERSION)

# Kubernetes and etcd versions of the binaries envtest (and the local cluster) run.
# They are built from the Go module proxy: release downloads are unreachable here.
K8S_VERSION ?= v1.37.2
K8S_STAGING_VERSION ?= v0.37.2
ETCD_VERSION ?= v3.6.7

# Setting SHELL to bash allows bash commands to be executed by recipes.
SHELL = /usr/bin/env bash -o pipefail
.SHELLFLAGS = -ec

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Display this help.
	@awk 'BEGIN {FS = ":.*##"; printf "\nUsage:\n  make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: controller-gen ## Generate CRDs and the ClusterRole from the markers (and the kubectl plugin's embedded copy of the CRDs).
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd webhook paths="./..." output:crd:artifacts:config=config/crd/bases
	cp config/crd/bases/*.yaml cmd/kubectl-envoymesh/crds/

.PHONY: generate
generate: controller-gen ## Generate DeepCopy methods.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./..."

.PHONY: fmt
fmt: ## Run go fmt against code.
	go fmt ./...

.PHONY: vet
vet: ## Run go vet against code.
	go vet ./...

.PHONY: test
test: manifests generate fmt vet envtest-assets ## Run unit and envtest suites (builds the envtest binaries on first use).
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" go test ./... -coverprofile cover.out

.PHONY: verify-generated
verify-generated: manifests generate ## Fail when generated or unformatted files differ from what is committed.
	@if [ -n "$$(gofmt -l $$(git ls-files '*.go'))" ]; then echo "not gofmt'ed:"; gofmt -l $$(git ls-files '*.go'); exit 1; fi
	@if [ -n "$$(git status --porcelain -- api config bundle cmd/kubectl-envoymesh/crds)" ]; then \
		echo "generated files are stale: run 'make manifests generate' (and 'make bundle') and commit:"; \
		git status --porcelain -- api config bundle cmd/kubectl-envoymesh/crds; git --no-pager diff --stat -- api config bundle cmd/kubectl-envoymesh/crds; exit 1; fi

##@ Build

.PHONY: build
build: manifests generate fmt vet ## Build manager binary and the kubectl plugin bin/kubectl-envoymesh.
	go build -o bin/manager .
	go build -o bin/kubectl-envoymesh ./cmd/kubectl-envoymesh

.PHONY: run
run: manifests generate fmt vet ## Run a controller from your host against the cluster in ~/.kube/config.
	go run ./main.go

.PHONY: docker-build
docker-build: ## Build docker image with the manager.
	docker build -t $(IMG) .

.PHONY: docker-push
docker-push: ## Push docker image with the manager.
	docker push $(IMG)

##@ Deployment

ifndef ignore-not-found
  ignore-not-found = false
endif

# The MeshService CRD embeds a PodTemplateSpec and exceeds the 256 KiB limit of the
# client-side last-applied annotation, so everything is applied server-side.
.PHONY: install
install: manifests kustomize kubectl ## Install CRDs into the K8s cluster specified in ~/.kube/config.
	$(KUSTOMIZE) build config/crd | $(KUBECTL) apply --server-side --force-conflicts -f -

.PHONY: uninstall
uninstall: manifests kustomize kubectl ## Uninstall CRDs from the K8s cluster specified in ~/.kube/config.
	$(KUSTOMIZE) build config/crd | $(KUBECTL) delete --ignore-not-found=$(ignore-not-found) -f -

.PHONY: deploy
deploy: manifests kustomize kubectl ## Deploy controller to the K8s cluster specified in ~/.kube/config.
	cd config/manager && $(KUSTOMIZE) edit set image controller=$(IMG)
	$(KUSTOMIZE) build config/default | $(KUBECTL) apply --server-side --force-conflicts -f -

.PHONY: undeploy
undeploy: kustomize kubectl ## Undeploy controller from the K8s cluster specified in ~/.kube/config.
	$(KUSTOMIZE) build config/default | $(KUBECTL) delete --ignore-not-found=$(ignore-not-found) -f -

# Feature areas keep their targets in hack/mk/*.mk (bundle, local cluster, bench).
include $(sort $(wildcard hack/mk/*.mk))

##@ Build Dependencies

## Location to install dependencies to
LOCALBIN ?= $(shell pwd)/bin
$(LOCALBIN):
	mkdir -p $(LOCALBIN)

## Tool Binaries
KUBECTL ?= $(LOCALBIN)/kubectl
KUSTOMIZE ?= $(LOCALBIN)/kustomize
CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen
ENVTEST_DIR ?= $(LOCALBIN)/k8s/$(K8S_VERSION)-etcd-$(ETCD_VERSION)

## Tool Versions
KUSTOMIZE_VERSION ?= v5.8.1
CONTROLLER_TOOLS_VERSION ?= v0.23.0

# KUBEBUILDER_ASSETS, when set, wins over the binaries this Makefile builds.
ifdef KUBEBUILDER_ASSETS
ENVTEST_ASSETS := $(KUBEBUILDER_ASSETS)
else
ENVTEST_ASSETS := $(ENVTEST_DIR)
endif

.PHONY: envtest-assets
envtest-assets: ## Build kube-apiserver and etcd for envtest from the module proxy (cached per version).
ifndef KUBEBUILDER_ASSETS
	@test -x $(ENVTEST_DIR)/kube-apiserver -a -x $(ENVTEST_DIR)/etcd || \
		K8S_VERSION=$(K8S_VERSION) K8S_STAGING_VERSION=$(K8S_STAGING_VERSION) ETCD_VERSION=$(ETCD_VERSION) \
		hack/build-k8s-binaries.sh $(ENVTEST_DIR) kube-apiserver etcd
endif

.PHONY: kubectl
kubectl: $(KUBECTL) ## Build kubectl from the module proxy if necessary.
$(KUBECTL): | $(LOCALBIN)
	K8S_VERSION=$(K8S_VERSION) K8S_STAGING_VERSION=$(K8S_STAGING_VERSION) ETCD_VERSION=$(ETCD_VERSION) \
		hack/build-k8s-binaries.sh $(LOCALBIN) kubectl

.PHONY: kustomize
kustomize: $(KUSTOMIZE) ## Download kustomize locally if necessary.
$(KUSTOMIZE): $(LOCALBIN)
	$(call go-install-tool,$(KUSTOMIZE),sigs.k8s.io/kustomize/kustomize/v5,$(KUSTOMIZE_VERSION))

.PHONY: controller-gen
controller-gen: $(CONTROLLER_GEN) ## Download controller-gen locally if necessary.
$(CONTROLLER_GEN): $(LOCALBIN)
	$(call go-install-tool,$(CONTROLLER_GEN),sigs.k8s.io/controller-tools/cmd/controller-gen,$(CONTROLLER_TOOLS_VERSION))

# go-install-tool installs package $2 at version $3 as $1, and records the version
# in $1-$3 so a changed pin reinstalls.
define go-install-tool
@[ -f "$(1)-$(3)" ] || { \
set -e; \
echo ">> installing $(2)@$(3)" ;\
rm -f $(1) || true ;\
GOBIN=$(LOCALBIN) go install $(2)@$(3) ;\
mv $(1) $(1)-$(3) ;\
} ;\
ln -sf $(1)-$(3) $(1)
endef
