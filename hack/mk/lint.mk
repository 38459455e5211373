##@ Lint

# make lint-manifests runs kube-score over what the operator writes: the
# Deployments, Services and NetworkPolicies of the seed mesh (config/samples, as in
# make demo), rendered by hack/lintmanifests with internal/objects exactly as the
# controllers build them, and the kustomized manager (config/default). It fails on
# any CRITICAL finding about the Envoy containers, the manager container or a pod
# or object field the operator writes; findings about the user's own containers
# are printed, not failed. docs/lint.md lists what is ignored and why.

# LOCALBIN is also set by the Makefile, after this file is included; the rule
# below needs it now.
LOCALBIN ?= $(shell pwd)/bin
KUBE_SCORE_VERSION ?= v1.20.0
KUBE_SCORE ?= $(LOCALBIN)/kube-score
LINT_DIR ?= $(LOCALBIN)/state/lint

.PHONY: lint-manifests
lint-manifests: kustomize kube-score ## Run kube-score over the objects the operator writes and the kustomized manager; fail on CRITICAL findings the operator controls.
	@mkdir -p $(LINT_DIR)
	go run ./hack/lintmanifests render > $(LINT_DIR)/operator.yaml
	$(KUSTOMIZE) build config/default > $(LINT_DIR)/manager.yaml
	@# kube-score exits 1 when it finds anything CRITICAL (the user's too); check decides.
	$(KUBE_SCORE) score --output-format ci $(LINT_DIR)/operator.yaml $(LINT_DIR)/manager.yaml > $(LINT_DIR)/kube-score.txt || [ $$? -eq 1 ]
	go run ./hack/lintmanifests check $(LINT_DIR)/operator.yaml $(LINT_DIR)/manager.yaml < $(LINT_DIR)/kube-score.txt

.PHONY: kube-score
kube-score: $(KUBE_SCORE)-$(KUBE_SCORE_VERSION) ## Build kube-score from the module proxy if necessary (cached per version).
	@ln -sf $(notdir $(KUBE_SCORE))-$(KUBE_SCORE_VERSION) $(KUBE_SCORE)
$(KUBE_SCORE)-$(KUBE_SCORE_VERSION):
	@mkdir -p $(dir $@)
	GOBIN=$(dir $@) go install github.com/zegl/kube-score/cmd/kube-score@$(KUBE_SCORE_VERSION)
	mv $(dir $@)kube-score $@
