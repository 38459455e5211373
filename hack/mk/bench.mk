##@ Benchmarks

# Knobs of `make bench` (see docs/benchmarks.md). The QPS, burst and concurrency are
# passed to the manager (--kube-api-qps, --kube-api-burst, --max-concurrent-reconciles)
# and used by the floor writer alike; they default to the manager's own defaults.
BENCH_RUNS ?= 3
BENCH_SIZES ?= 100,1000,3000
BENCH_FANOUTS ?= 10,100
BENCH_CONFIG_MESHES ?= 10,1000
BENCH_IDENTITY_PODS ?= 1000
BENCH_AUTHZ_CALLERS ?= 100
BENCH_AUTHZ_STEPS ?= 10
BENCH_AUTHZ_MESH ?= 1000
BENCH_MEMORY_N ?= 1000
BENCH_MEMORY_UNRELATED ?= 5000
BENCH_XDS_SIDECARS ?= 1000
BENCH_XDS_PODS ?= 4
BENCH_XDS_STEPS ?= 10
BENCH_QPS ?= 50
BENCH_BURST ?= 100
BENCH_CONCURRENCY ?= 8
BENCH_MANAGER_ARGS ?=
BENCH_SCENARIOS ?= convergence,floor,fanout,config,authz-newcaller,identity,memory,xds,gobench
BENCH_TIMEOUT ?= 10m
BENCH_OUT ?= docs/benchmarks.md

BENCH_FLAGS = -runs=$(BENCH_RUNS) -sizes=$(BENCH_SIZES) -fanouts=$(BENCH_FANOUTS) \
	-config-meshes=$(BENCH_CONFIG_MESHES) -identity-pods=$(BENCH_IDENTITY_PODS) \
	-authz-callers=$(BENCH_AUTHZ_CALLERS) -authz-steps=$(BENCH_AUTHZ_STEPS) -authz-mesh=$(BENCH_AUTHZ_MESH) \
	-memory-n=$(BENCH_MEMORY_N) -memory-unrelated=$(BENCH_MEMORY_UNRELATED) -qps=$(BENCH_QPS) -burst=$(BENCH_BURST) \
	-xds-sidecars=$(BENCH_XDS_SIDECARS) -xds-pods=$(BENCH_XDS_PODS) -xds-steps=$(BENCH_XDS_STEPS) \
	-concurrency=$(BENCH_CONCURRENCY) -manager=bin/bench-manager -manager-args='$(BENCH_MANAGER_ARGS)' \
	-scenarios=$(BENCH_SCENARIOS) -timeout=$(BENCH_TIMEOUT) -out=$(BENCH_OUT)

.PHONY: bench
bench: envtest-assets ## Run every benchmark against fresh envtest control planes and rewrite docs/benchmarks.md (slow; not for CI).
	go build -o bin/bench-manager .
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" go run ./hack/bench $(BENCH_FLAGS)

.PHONY: bench-quick
bench-quick: ## One run at N=100 and D=10 (100 pods for identity, 2 new callers of a 10-caller service in a mesh of 100, memory with 100 MeshServices beside 500 unrelated objects of each kind, xDS with 200 simulated sidecars and 3 changes of each kind) to check the harness; prints the report instead of writing it.
	$(MAKE) bench BENCH_RUNS=1 BENCH_SIZES=100 BENCH_FANOUTS=10 BENCH_CONFIG_MESHES=10,100 BENCH_IDENTITY_PODS=100 BENCH_AUTHZ_CALLERS=10 BENCH_AUTHZ_STEPS=2 BENCH_AUTHZ_MESH=100 BENCH_MEMORY_N=100 BENCH_MEMORY_UNRELATED=500 BENCH_XDS_SIDECARS=200 BENCH_XDS_STEPS=3 BENCH_OUT=

.PHONY: bench-go
bench-go: ## Run only the Go micro-benchmarks (builder cost, callee config with 10/100/1000 callers, prober sweep over 1000 stub sidecars, signing cost).
	go test -run '^$$' -bench . -benchmem ./internal/...
	go test -run '^$$' -bench SignRequest -benchmem ./controllers/
