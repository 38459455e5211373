// Command bench measures the operator at scale and rewrites docs/benchmarks.md.
//
// Every scenario run gets a fresh envtest control plane (kube-apiserver and etcd from
// KUBEBUILDER_ASSETS) with the CRDs of config/crd/bases. The operator runs as the real
// manager binary in a subprocess, so its peak RSS (VmHWM) is its own; the floor is a
// cache-less writer inside this process that sends the same writes with the same
// client settings. Run it with `make bench`; see hack/mk/bench.mk for the knobs.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// options are the knobs of one bench invocation.
type options struct {
	runs        int
	sizes       []int
	sizeRuns    map[int]int // sizes given as NxR run R times instead of runs
	fanouts     []int
	meshSizes   []int
	idPods      []int
	qps         float64
	burst       int
	concurrency int
	manager     string
	managerArgs []string
	crdDir      string
	out         string
	repo        string
	timeout     time.Duration
	scenarios   map[string]bool
	envoyImage  string
	logDir      string
	cpuProfile  time.Duration

	// authz-newcaller: callers hub has, new callers per run, and the mesh size
	// unrelated MeshServices fill up to in the first run (0: none).
	authzCallers, authzSteps, authzMesh int
	// memory: MeshServices, and unrelated Deployments, Services and ConfigMaps
	// (of each kind) in the second cluster.
	memoryN, memoryUnrelated int
	// xds: simulated sidecars, pods per MeshService, changes per kind.
	xdsSidecars, xdsPods, xdsSteps int
	// serviceCIDR, when set, is the control plane's Service IP range.
	serviceCIDR string
}

// defaultScenarios is what runs without -scenarios; identity runs its floor too.
const defaultScenarios = "convergence,floor,fanout,config,authz-newcaller,identity,memory,xds,gobench"

// benchEnvoyImage is passed to the manager and used by the floor, so both write
// byte-identical Deployments.
const benchEnvoyImage = "envoyproxy/envoy:distroless-v1.40.0"

func main() {
	var (
		o                            options
		sizes, fanouts, meshes, scen string
		idPods                       string
		managerArgs                  string
	)
	flag.IntVar(&o.runs, "runs", 3, "Runs of every scenario; the report shows medians.")
	flag.StringVar(&sizes, "sizes", "100,1000,3000", "MeshService counts for the convergence scenario; NxR runs size N R times instead of -runs times.")
	flag.StringVar(&fanouts, "fanouts", "10,100", "Dependent counts for the update fan-out scenario.")
	flag.StringVar(&meshes, "config-meshes", "10,1000", "Mesh sizes at which a 3-upstream service's ConfigMap is weighed.")
	flag.StringVar(&idPods, "identity-pods", "1000", "Pod counts for the identity scenario: that many pods request certificates at once.")
	flag.IntVar(&o.authzCallers, "authz-callers", 100, "Callers the service of the authz-newcaller scenario has before a new one comes (its ConfigMap is also weighed at 10 callers when this is more).")
	flag.IntVar(&o.authzSteps, "authz-steps", 10, "New callers per run of the authz-newcaller scenario, one at a time.")
	flag.IntVar(&o.authzMesh, "authz-mesh", 1000, "Mesh size that unrelated MeshServices fill up to in the first authz-newcaller run, before as many new callers again (0: skip).")
	flag.IntVar(&o.memoryN, "memory-n", 1000, "MeshServices of the memory scenario.")
	flag.IntVar(&o.memoryUnrelated, "memory-unrelated", 5000, "Unrelated Deployments, Services and ConfigMaps (of each kind) in the memory scenario's second cluster.")
	flag.IntVar(&o.xdsSidecars, "xds-sidecars", 1000, "Simulated sidecars of the xds scenario (a multiple of -xds-pods).")
	flag.IntVar(&o.xdsPods, "xds-pods", 4, "Pods (sidecars) per MeshService in the xds scenario.")
	flag.IntVar(&o.xdsSteps, "xds-steps", 10, "Changes of one service, and EndpointSlice changes, per xds run.")
	flag.Float64Var(&o.qps, "qps", 50, "--kube-api-qps of the manager, and the floor writer's QPS.")
	flag.IntVar(&o.burst, "burst", 100, "--kube-api-burst of the manager, and the floor writer's burst.")
	flag.IntVar(&o.concurrency, "concurrency", 8, "--max-concurrent-reconciles of the manager, and the floor writer's workers.")
	flag.StringVar(&o.manager, "manager", "bin/manager", "The manager binary (go build -o bin/manager .).")
	flag.StringVar(&managerArgs, "manager-args", "", "Extra space-separated flags for the manager.")
	flag.StringVar(&o.crdDir, "crd-dir", "config/crd/bases", "CRDs loaded into every control plane.")
	flag.StringVar(&o.out, "out", "docs/benchmarks.md", "The report to rewrite; empty prints it to stdout only.")
	flag.DurationVar(&o.timeout, "timeout", 10*time.Minute, "How long one run may take to converge before its size is reported as skipped.")
	flag.StringVar(&scen, "scenarios", defaultScenarios, "Scenarios to run (comma-separated).")
	flag.StringVar(&o.envoyImage, "envoy-image", benchEnvoyImage, "Sidecar image passed to the manager and used by the floor.")
	flag.StringVar(&o.logDir, "log-dir", "", "Where manager logs and metrics go (default: a temporary directory, removed unless a run fails).")
	flag.DurationVar(&o.cpuProfile, "cpu-profile", 0, "When set, CPU profiles of the manager and the API server over this long from the first create of each convergence run, and of the API server in each floor run, go to -log-dir as <run>-{manager,apiserver}-cpu.pprof.")
	flag.Parse()

	var err error
	if o.sizes, o.sizeRuns, err = parseSizes(sizes); err != nil {
		log.Fatalf("-sizes: %v", err)
	}
	if o.fanouts, err = parseInts(fanouts); err != nil {
		log.Fatalf("-fanouts: %v", err)
	}
	if o.meshSizes, err = parseInts(meshes); err != nil {
		log.Fatalf("-config-meshes: %v", err)
	}
	if o.idPods, err = parseInts(idPods); err != nil {
		log.Fatalf("-identity-pods: %v", err)
	}
	o.managerArgs = strings.Fields(managerArgs)
	o.scenarios = map[string]bool{}
	for _, s := range strings.Split(scen, ",") {
		if s = strings.TrimSpace(s); s != "" {
			o.scenarios[s] = true
		}
	}
	if o.authzCallers < 1 || o.authzSteps < 1 {
		log.Fatal("-authz-callers and -authz-steps must be at least 1")
	}
	if o.runs < 1 {
		log.Fatal("-runs must be at least 1")
	}
	if o.repo, err = os.Getwd(); err != nil {
		log.Fatal(err)
	}
	if o.manager, err = filepath.Abs(o.manager); err != nil {
		log.Fatal(err)
	}
	tempLogs := o.logDir == ""
	if tempLogs {
		if o.logDir, err = os.MkdirTemp("", "envoymesh-bench-"); err != nil {
			log.Fatal(err)
		}
	} else if err := os.MkdirAll(o.logDir, 0o755); err != nil {
		log.Fatal(err)
	}
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		log.Fatal("KUBEBUILDER_ASSETS is not set: run `make envtest-assets` and use `make bench`")
	}

	// The bench's own caches log through controller-runtime; only the manager's logs matter.
	ctrllog.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	ctx := context.Background()
	res := &results{opts: o, started: time.Now().UTC(), machine: describeMachine()}
	res.init()
	needsManager := o.scenarios["convergence"] || o.scenarios["fanout"] || o.scenarios["config"] || o.scenarios["identity"] || o.scenarios["authz-newcaller"] || o.scenarios["memory"] || o.scenarios["xds"]
	if needsManager {
		if _, err := os.Stat(o.manager); err != nil {
			log.Fatalf("manager binary: %v (build it with `go build -o bin/manager .`)", err)
		}
	}

	if err := run(ctx, o, res); err != nil {
		log.Printf("bench failed: %v (manager logs in %s)", err, o.logDir)
		os.Exit(1)
	}
	res.finished = time.Now().UTC()
	report := res.markdown()
	if o.out == "" {
		fmt.Print(report)
	} else {
		if err := writeReport(o.out, report); err != nil {
			log.Fatal(err)
		}
		log.Printf("wrote %s", o.out)
	}
	if len(res.failures) > 0 {
		log.Printf("%d runs failed (listed in the report); manager logs in %s", len(res.failures), o.logDir)
		os.Exit(1)
	}
	if tempLogs && !res.keepLogs {
		_ = os.RemoveAll(o.logDir)
	}
}

// run executes the scenarios in an order that puts the manager and its floor side by
// side: for each size, manager and floor runs alternate, so load from elsewhere hits
// both alike.
func run(ctx context.Context, o options, res *results) error {
	if o.scenarios["gobench"] {
		if err := runGoBenchmarks(ctx, o, res); err != nil {
			return err
		}
	}
	for _, n := range o.sizes {
		for i := range o.runsOf(n) {
			if o.scenarios["convergence"] {
				if skip := res.skipped[n]; skip != "" {
					break
				}
				r, err := convergenceRun(ctx, o, n, i)
				switch {
				case err == errTimeout:
					res.skipped[n] = fmt.Sprintf("did not converge within %s", o.timeout)
					res.keepLogs = true
					logf("N=%d run %d: %s; size skipped", n, i+1, res.skipped[n])
				case err != nil:
					res.fail(fmt.Sprintf("convergence N=%d run %d", n, i+1), err)
					res.skipped[n] = "a run failed"
				default:
					res.addConvergence(n, r)
				}
			}
			if o.scenarios["floor"] && res.skipped[n] == "" {
				f, err := floorRun(ctx, o, n, i)
				if err != nil {
					res.fail(fmt.Sprintf("floor N=%d run %d", n, i+1), err)
					continue
				}
				res.addFloor(n, f)
			}
		}
	}
	if o.scenarios["config"] {
		for _, m := range o.meshSizes {
			if _, done := res.configBytes[m]; done {
				continue // weighed during the convergence runs of that size
			}
			r, err := configRun(ctx, o, m)
			if err != nil {
				res.fail(fmt.Sprintf("config size at mesh of %d", m), err)
				continue
			}
			res.addConfig(m, r)
		}
	}
	if o.scenarios["authz-newcaller"] {
		for i := range o.runs {
			r, err := authzRun(ctx, o, i)
			if err != nil {
				res.fail(fmt.Sprintf("authz-newcaller run %d", i+1), err)
				continue
			}
			res.authz = append(res.authz, r)
		}
	}
	if o.scenarios["identity"] {
		for _, n := range o.idPods {
			runIdentity(ctx, o, res, n)
		}
	}
	if o.scenarios["memory"] {
		runMemory(ctx, o, res)
	}
	if o.scenarios["xds"] {
		runXDS(ctx, o, res)
	}
	if o.scenarios["fanout"] {
		for _, d := range o.fanouts {
			for i := range o.runs {
				r, err := fanoutRun(ctx, o, d, i)
				if err != nil {
					res.fail(fmt.Sprintf("fan-out D=%d run %d", d, i+1), err)
					continue
				}
				res.addFanout(d, r)
			}
		}
	}
	return nil
}

// runIdentity runs the identity scenario at n pods, its manager runs and floor
// runs alternating like convergence and floor.
func runIdentity(ctx context.Context, o options, res *results, n int) {
	for i := range o.runs {
		r, err := identityRun(ctx, o, n, i)
		if err != nil {
			res.fail(fmt.Sprintf("identity N=%d run %d", n, i+1), err)
			return
		}
		res.identity[n] = append(res.identity[n], r)
		f, err := identityFloorRun(ctx, o, n, i)
		if err != nil {
			res.fail(fmt.Sprintf("identity floor N=%d run %d", n, i+1), err)
			continue
		}
		res.identityFloor[n] = append(res.identityFloor[n], f)
	}
}

// runMemory runs the memory scenario: for each run, the empty cluster and the
// one with unrelated objects, alternating.
func runMemory(ctx context.Context, o options, res *results) {
	if o.memoryN < 3 {
		res.fail("memory", fmt.Errorf("-memory-n must be at least 3, not %d", o.memoryN))
		return
	}
	for i := range o.runs {
		for _, u := range []int{0, o.memoryUnrelated} {
			r, err := memoryRun(ctx, o, o.memoryN, u, i)
			if err != nil {
				res.fail(fmt.Sprintf("memory N=%d U=%d run %d", o.memoryN, u, i+1), err)
				continue
			}
			res.memory[u] = append(res.memory[u], r)
		}
	}
}

// runsOf is how many times size n runs.
func (o options) runsOf(n int) int {
	if r, ok := o.sizeRuns[n]; ok {
		return r
	}
	return o.runs
}

// parseSizes reads "100,1000x1": sizes, and run counts for those that set one.
func parseSizes(s string) ([]int, map[int]int, error) {
	var sizes []int
	runs := map[int]int{}
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		size, count, hasCount := strings.Cut(f, "x")
		n, err := strconv.Atoi(size)
		if err != nil || n < 3 {
			return nil, nil, fmt.Errorf("%q: a size is an integer of at least 3", f)
		}
		if hasCount {
			r, err := strconv.Atoi(count)
			if err != nil || r < 1 {
				return nil, nil, fmt.Errorf("%q: the run count after x must be a positive integer", f)
			}
			runs[n] = r
		}
		sizes = append(sizes, n)
	}
	return sizes, runs, nil
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive integer", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func logf(format string, args ...any) {
	log.Printf(format, args...)
}
