package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// results collects every run's figures.
type results struct {
	opts              options
	started, finished time.Time
	machine           machine
	conv              map[int][]*convergenceResult
	floor             map[int][]*floorResult
	skipped           map[int]string
	configBytes       map[int][]int
	fanout            map[int][]*fanoutResult
	identity          map[int][]*identityResult
	identityFloor     map[int][]*identityFloorResult
	authz             []*authzResult
	memory            map[int][]*memoryResult // by unrelated objects per kind
	xds               []*xdsResult
	goBench           []*benchFigures
	failures          []string
	keepLogs          bool
}

// fail records a failed run; the others go on, and the bench exits non-zero.
func (r *results) fail(what string, err error) {
	r.keepLogs = true
	r.failures = append(r.failures, fmt.Sprintf("%s: %v", what, err))
	logf("%s failed: %v", what, err)
}

func (r *results) init() {
	if r.conv == nil {
		r.conv = map[int][]*convergenceResult{}
		r.floor = map[int][]*floorResult{}
		r.skipped = map[int]string{}
		r.configBytes = map[int][]int{}
		r.fanout = map[int][]*fanoutResult{}
		r.identity = map[int][]*identityResult{}
		r.identityFloor = map[int][]*identityFloorResult{}
		r.memory = map[int][]*memoryResult{}
	}
}

func (r *results) addConvergence(n int, c *convergenceResult) {
	r.conv[n] = append(r.conv[n], c)
	r.configBytes[n] = append(r.configBytes[n], c.configBytes)
}

func (r *results) addFloor(n int, f *floorResult) { r.floor[n] = append(r.floor[n], f) }

func (r *results) addConfig(m int, c *convergenceResult) {
	r.configBytes[m] = append(r.configBytes[m], c.configBytes)
}

func (r *results) addFanout(d int, f *fanoutResult) { r.fanout[d] = append(r.fanout[d], f) }

type machine struct {
	cpus            int
	model, memory   string
	kernel, loadavg string
}

func describeMachine() machine {
	m := machine{cpus: runtime.NumCPU(), model: "unknown", memory: "unknown"}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.model = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if f, err := os.Open("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if fields := strings.Fields(sc.Text()); len(fields) >= 2 && fields[0] == "MemTotal:" {
				kb, _ := strconv.ParseInt(fields[1], 10, 64)
				m.memory = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		m.loadavg = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	return m
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func list(v []float64, format string) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = fmt.Sprintf(format, x)
	}
	return strings.Join(parts, ", ")
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}

// duration prints ns as the largest unit that keeps it above 1.
func duration(ns float64) string {
	switch {
	case ns >= 1e9:
		return fmt.Sprintf("%.2f s", ns/1e9)
	case ns >= 1e6:
		return fmt.Sprintf("%.2f ms", ns/1e6)
	case ns >= 1e3:
		return fmt.Sprintf("%.1f µs", ns/1e3)
	default:
		return fmt.Sprintf("%.0f ns", ns)
	}
}

func fmtMetrics(m map[string]float64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%.6g", k, m[k]))
	}
	return strings.Join(parts, " ")
}

func sortedKeys[V any](m map[int]V) []int {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// makeCommand is the make invocation that reproduces this report.
func (r *results) makeCommand() string {
	o := r.opts
	ints := func(v []int) string {
		s := make([]string, len(v))
		for i, x := range v {
			s[i] = strconv.Itoa(x)
		}
		return strings.Join(s, ",")
	}
	sizes := make([]string, len(o.sizes))
	for i, n := range o.sizes {
		sizes[i] = strconv.Itoa(n)
		if r, ok := o.sizeRuns[n]; ok {
			sizes[i] += "x" + strconv.Itoa(r)
		}
	}
	cmd := fmt.Sprintf("make bench BENCH_RUNS=%d BENCH_SIZES=%s BENCH_FANOUTS=%s BENCH_CONFIG_MESHES=%s BENCH_IDENTITY_PODS=%s BENCH_QPS=%s BENCH_BURST=%d BENCH_CONCURRENCY=%d",
		o.runs, strings.Join(sizes, ","), ints(o.fanouts), ints(o.meshSizes), ints(o.idPods), strconv.FormatFloat(o.qps, 'f', -1, 64), o.burst, o.concurrency)
	if o.scenarios["authz-newcaller"] {
		cmd += fmt.Sprintf(" BENCH_AUTHZ_CALLERS=%d BENCH_AUTHZ_STEPS=%d BENCH_AUTHZ_MESH=%d", o.authzCallers, o.authzSteps, o.authzMesh)
	}
	if o.scenarios["memory"] {
		cmd += fmt.Sprintf(" BENCH_MEMORY_N=%d BENCH_MEMORY_UNRELATED=%d", o.memoryN, o.memoryUnrelated)
	}
	if o.scenarios["xds"] {
		cmd += fmt.Sprintf(" BENCH_XDS_SIDECARS=%d BENCH_XDS_PODS=%d BENCH_XDS_STEPS=%d", o.xdsSidecars, o.xdsPods, o.xdsSteps)
	}
	if scen := o.scenarioList(); scen != defaultScenarios {
		cmd += " BENCH_SCENARIOS=" + scen
	}
	if len(o.managerArgs) > 0 {
		cmd += fmt.Sprintf(" BENCH_MANAGER_ARGS='%s'", strings.Join(o.managerArgs, " "))
	}
	return cmd
}

// markdown renders the generated section of docs/benchmarks.md.
func (r *results) markdown() string {
	o := r.opts
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }

	w("Generated by `%s` on %s (%s of wall time). Medians of %d runs (a size written NxR ran R times); the Runs column lists every run in order.\n\n",
		r.makeCommand(), r.started.Format("2006-01-02 15:04 UTC"), r.finished.Sub(r.started).Round(time.Second), o.runs)
	if load, err := strconv.ParseFloat(strings.Fields(r.machine.loadavg + " 0")[0], 64); err == nil && load > float64(r.machine.cpus) {
		w("**The machine was busy** (load average %.1f on %d CPUs when the bench started): times are noisy, rerun on a quiet machine before comparing them.\n\n", load, r.machine.cpus)
	}
	w("| Measurement | Median | Runs | Target |\n|---|---|---|---|\n")

	// 1 and 5: convergence, floor, ratio, memory.
	sizes := slices.Clone(o.sizes)
	slices.Sort(sizes)
	for _, n := range sizes {
		if why := r.skipped[n]; why != "" && len(r.conv[n]) == 0 {
			w("| Convergence, N=%d | skipped | %s | |\n", n, why)
			continue
		}
		runs := r.conv[n]
		if len(runs) == 0 {
			continue
		}
		var total, byStatus, rss []float64
		for _, c := range runs {
			total = append(total, c.total.Seconds())
			byStatus = append(byStatus, c.byStatus.Seconds())
			rss = append(rss, mib(c.peakRSS))
		}
		mTotal := median(total)
		w("| Convergence, N=%d: manager (default mesh: mTLS Strict, authorization Enforce; until every policy names both callers) | %.2f s | %s | |\n", n, mTotal, list(total, "%.2f"))
		w("| Convergence, N=%d: manager, by status alone (observedGeneration and UpstreamsResolved, policies maybe incomplete) | %.2f s | %s | |\n", n, median(byStatus), list(byStatus, "%.2f"))
		if floors := r.floor[n]; len(floors) > 0 {
			var fl, wr []float64
			for _, f := range floors {
				fl = append(fl, f.stream.Seconds())
				wr = append(wr, f.writes.Seconds())
			}
			mFloor := median(fl)
			var ratios []float64
			for i := range min(len(total), len(fl)) {
				ratios = append(ratios, total[i]/fl[i])
			}
			ratio := mTotal / mFloor
			w("| Convergence, N=%d: floor (same creates at once; bare writer streams the same 5 applies, NetworkPolicy and mTLS config with callers included, + 1 status write each) | %.2f s | %s | |\n", n, mFloor, list(fl, "%.2f"))
			w("| Convergence, N=%d: ratio manager / floor, mTLS on | %.2f | %s | ≤ 1.25: %s |\n", n, ratio, list(ratios, "%.2f"), verdict(ratio <= 1.25))
			w("| Convergence, N=%d: the floor's writes alone (MeshServices created beforehand, not timed) | %.2f s | %s | |\n", n, median(wr), list(wr, "%.2f"))
		}
		target := ""
		if n == 1000 {
			target = "≤ 150 MiB: " + verdict(median(rss) <= 150)
		}
		w("| Manager peak RSS (VmHWM), N=%d | %.1f MiB | %s | %s |\n", n, median(rss), list(rss, "%.1f"), target)
		if why := r.skipped[n]; why != "" {
			w("| Convergence, N=%d: later runs | skipped | %s | |\n", n, why)
		}
	}

	// 2: fan-out.
	for _, d := range sortedKeys(r.fanout) {
		var p50, mx []float64
		for _, f := range r.fanout[d] {
			p50 = append(p50, f.p50.Seconds()*1000)
			mx = append(mx, f.max.Seconds()*1000)
		}
		w("| Update fan-out, D=%d callers: p50 | %.0f ms | %s | |\n", d, median(p50), list(p50, "%.0f"))
		w("| Update fan-out, D=%d callers: max | %.0f ms | %s | |\n", d, median(mx), list(mx, "%.0f"))
	}

	// 3: config size.
	meshes := sortedKeys(r.configBytes)
	var first float64
	for i, m := range meshes {
		v := make([]float64, len(r.configBytes[m]))
		for j, x := range r.configBytes[m] {
			v[j] = float64(x)
		}
		med := median(v)
		target := ""
		if i == 0 {
			first = med
		} else {
			target = fmt.Sprintf("flat (vs %d services): %s", meshes[0], verdict(med == first))
		}
		w("| ConfigMap data of a 3-upstream service, mesh of %d | %.0f B | %s | %s |\n", m, med, list(v, "%.0f"), target)
	}

	// Authorization: a new caller, and the callee's bytes.
	r.authzRows(w)

	// Workload identity: N pods requesting certificates at once.
	r.identityRows(w)

	// Memory and cluster size.
	r.memoryRows(w)

	// xDS delivery.
	r.xdsRows(w)

	// 4 and 6: go test benchmarks.
	for _, g := range r.goBench {
		if g.skip != "" {
			w("| %s | skipped | %s | |\n", g.name, g.skip)
			continue
		}
		ns := g.units["ns/op"]
		cell := duration(median(ns)) + "/op"
		if a := g.units["allocs/op"]; len(a) > 0 {
			cell += fmt.Sprintf(" · %.0f allocs/op", median(a))
		}
		if a := g.units["B/op"]; len(a) > 0 {
			cell += fmt.Sprintf(" · %.1f KiB/op", median(a)/1024)
		}
		if c := g.units["cpu-ns/op"]; len(c) > 0 {
			cell += " · " + duration(median(c)) + " CPU/op"
		}
		for _, u := range []string{"lds-B", "data-B"} {
			if v := g.units[u]; len(v) > 0 {
				cell += fmt.Sprintf(" · %s %.0f B", strings.TrimSuffix(u, "-B"), median(v))
			}
		}
		nsRuns := make([]string, len(ns))
		for i, x := range ns {
			nsRuns[i] = duration(x)
		}
		w("| `%s` | %s | %s | %s |\n", strings.TrimPrefix(g.name, "Benchmark"), cell, strings.Join(nsRuns, ", "), g.target(r.goBench))
	}

	for _, f := range r.failures {
		w("| Failed run | — | %s | |\n", strings.ReplaceAll(f, "|", "\\|"))
	}

	// Where the manager's time went: per-MeshService request and reconcile counts.
	if len(r.conv) > 0 {
		w("\nWhat the manager did per MeshService (medians over the convergence runs; from its own metrics):\n\n")
		w("| N | creates took | reconciles | API requests by method | manager CPU |\n|---|---|---|---|---|\n")
		for _, n := range sortedKeys(r.conv) {
			runs := r.conv[n]
			var create, rec, cpu []float64
			perMethod := map[string][]float64{}
			for _, c := range runs {
				create = append(create, c.create.Seconds())
				var total float64
				for k, v := range c.metrics {
					switch {
					case strings.HasPrefix(k, "controller_runtime_reconcile_total{meshservice,"):
						total += v
					case strings.HasPrefix(k, "rest_client_requests_total{"):
						method := strings.TrimSuffix(strings.TrimPrefix(k, "rest_client_requests_total{"), "}")
						perMethod[method] = append(perMethod[method], v/float64(n))
					}
				}
				rec = append(rec, total/float64(n))
				cpu = append(cpu, c.metrics["process_cpu_seconds_total"])
			}
			methods := make([]string, 0, len(perMethod))
			for k := range perMethod {
				methods = append(methods, k)
			}
			slices.Sort(methods)
			var parts []string
			for _, k := range methods {
				parts = append(parts, fmt.Sprintf("%s %.2f", k, median(perMethod[k])))
			}
			w("| %d | %.2f s | %.2f | %s | %.1f s |\n", n, median(create), median(rec), strings.Join(parts, ", "), median(cpu))
		}
		w("\nThe floor sends exactly 5 PATCH (apply) and 1 PUT (status) per MeshService.\n")
	}
	r.identityWork(w)
	r.memoryWork(w)
	r.xdsWork(w)

	w("\n**Settings.** Manager flags `--kube-api-qps=%s --kube-api-burst=%d --max-concurrent-reconciles=%d",
		strconv.FormatFloat(o.qps, 'f', -1, 64), o.burst, o.concurrency)
	if len(o.managerArgs) > 0 {
		w(" %s", strings.Join(o.managerArgs, " "))
	}
	w("`; the floor uses the same QPS, burst and number of workers")
	if len(r.identity) > 0 {
		w(" (the identity floor: the signer's %d workers)", signerWorkers)
	}
	w(".\n\n")
	w("**Machine.** %d CPUs (%s), %s RAM, Linux %s, load average %s at the start; %s.\n\n",
		r.machine.cpus, r.machine.model, r.machine.memory, r.machine.kernel, r.machine.loadavg, runtime.Version())
	w("**Commands.**\n\n```sh\n%s\n# which runs:\ngo build -o bin/bench-manager .\n", r.makeCommand())
	w("KUBEBUILDER_ASSETS=<envtest assets> go run ./hack/bench %s\n", strings.Join(os.Args[1:], " "))
	if o.scenarios["gobench"] {
		for _, g := range goBenches {
			w("%s\n", g.command(o.runs))
		}
	}
	w("```\n")
	return b.String()
}

const (
	beginMarker = "<!-- BEGIN GENERATED BY hack/bench: `make bench` rewrites everything up to the END marker -->"
	endMarker   = "<!-- END GENERATED -->"
)

// writeReport replaces the generated section of path, keeping what is around it;
// a file without markers gets them appended.
func writeReport(path, section string) error {
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	doc := string(old)
	gen := beginMarker + "\n\n" + section + "\n" + endMarker
	i, j := strings.Index(doc, beginMarker), strings.Index(doc, endMarker)
	switch {
	case i >= 0 && j > i:
		doc = doc[:i] + gen + doc[j+len(endMarker):]
	case doc == "":
		doc = "# Benchmarks\n\n" + gen + "\n"
	default:
		doc = strings.TrimRight(doc, "\n") + "\n\n" + gen + "\n"
	}
	return os.WriteFile(path, []byte(doc), 0o644)
}

// scenarioList is the scenarios run, in defaultScenarios' order (others after).
func (o options) scenarioList() string {
	var out []string
	seen := map[string]bool{}
	for _, sc := range strings.Split(defaultScenarios, ",") {
		if o.scenarios[sc] {
			out = append(out, sc)
			seen[sc] = true
		}
	}
	var rest []string
	for sc := range o.scenarios {
		if !seen[sc] {
			rest = append(rest, sc)
		}
	}
	slices.Sort(rest)
	return strings.Join(append(out, rest...), ",")
}

// identityRows are the identity scenario's lines of the main table.
func (r *results) identityRows(w func(string, ...any)) {
	for _, n := range sortedKeys(r.identity) {
		runs := r.identity[n]
		var p50, p99, total, rss, peak []float64
		outcome := make([]string, len(runs))
		for i, x := range runs {
			p50 = append(p50, float64(x.quantile(0.5)))
			p99 = append(p99, float64(x.quantile(0.99)))
			total = append(total, x.total.Seconds())
			rss = append(rss, mib(x.rss))
			peak = append(peak, mib(x.peak))
			outcome[i] = fmt.Sprintf("%d/%d", x.issued, x.denied)
		}
		label := fmt.Sprintf("Workload identity, N=%d pods at once", n)
		w("| %s: request → Issued, p50 | %s | %s | |\n", label, duration(median(p50)), durations(p50))
		w("| %s: request → Issued, p99 | %s | %s | |\n", label, duration(median(p99)), durations(p99))
		w("| %s: total, first request filed → last Issued | %.2f s | %s | |\n", label, median(total), list(total, "%.2f"))
		w("| %s: issued/denied | %s | %s | all issued, none denied |\n", label, outcome[len(outcome)/2], strings.Join(outcome, ", "))
		if floors := r.identityFloor[n]; len(floors) > 0 {
			var fl, wr, fp50, fp99 []float64
			for _, f := range floors {
				fl = append(fl, f.stream.total.Seconds())
				wr = append(wr, f.writes.Seconds())
				fp50 = append(fp50, float64(f.stream.quantile(0.5)))
				fp99 = append(fp99, float64(f.stream.quantile(0.99)))
			}
			var ratios []float64
			for i := range min(len(total), len(fl)) {
				ratios = append(ratios, total[i]/fl[i])
			}
			ratio := median(total) / median(fl)
			w("| %s: floor (same requests filed at once; bare writer, %d workers, writes each one's Issued status as its create returns) | %.2f s | %s | |\n",
				label, signerWorkers, median(fl), list(fl, "%.2f"))
			w("| %s: ratio signer / floor | %.2f | %s | ≤ 1.25: %s |\n", label, ratio, list(ratios, "%.2f"), verdict(ratio <= 1.25))
			w("| %s: floor, request → Issued p50 / p99 | %s / %s | %s / %s | |\n", label, duration(median(fp50)), duration(median(fp99)), durations(fp50), durations(fp99))
			w("| %s: the floor's status writes alone (requests filed beforehand, not timed) | %.2f s | %s | |\n", label, median(wr), list(wr, "%.2f"))
		}
		w("| Manager RSS (VmRSS) with N=%d issued pods | %.1f MiB | %s | |\n", n, median(rss), list(rss, "%.1f"))
		w("| Manager peak RSS (VmHWM), identity N=%d | %.1f MiB | %s | |\n", n, median(peak), list(peak, "%.1f"))
	}
}

// durations lists ns values as duration does.
func durations(ns []float64) string {
	parts := make([]string, len(ns))
	for i, x := range ns {
		parts[i] = duration(x)
	}
	return strings.Join(parts, ", ")
}

// identityWork explains the identity runs from the manager's own metrics.
func (r *results) identityWork(w func(string, ...any)) {
	if len(r.identity) == 0 {
		return
	}
	w("\nWhat the manager did per certificate request in the identity runs (medians; from its own metrics, from just before the first request was filed to the last Issued):\n\n")
	w("| N | filing took | signer reconciles | signer time | API requests by method | manager CPU |\n|---|---|---|---|---|---|\n")
	for _, n := range sortedKeys(r.identity) {
		var create, rec, recTime, cpu []float64
		perMethod := map[string][]float64{}
		for _, x := range r.identity[n] {
			create = append(create, x.create.Seconds())
			var total float64
			for k, v := range x.metrics {
				switch {
				case strings.HasPrefix(k, "controller_runtime_reconcile_total{identity-signer,"):
					total += v
				case strings.HasPrefix(k, "rest_client_requests_total{"):
					method := strings.TrimSuffix(strings.TrimPrefix(k, "rest_client_requests_total{"), "}")
					perMethod[method] = append(perMethod[method], v/float64(n))
				}
			}
			rec = append(rec, total/float64(n))
			recTime = append(recTime, x.metrics["controller_runtime_reconcile_time_seconds_sum{identity-signer}"]/float64(n)*1e9)
			cpu = append(cpu, x.metrics["process_cpu_seconds_total"])
		}
		methods := make([]string, 0, len(perMethod))
		for k := range perMethod {
			methods = append(methods, k)
		}
		slices.Sort(methods)
		var parts []string
		for _, k := range methods {
			parts = append(parts, fmt.Sprintf("%s %.2f", k, median(perMethod[k])))
		}
		w("| %d | %.2f s | %.2f | %s | %s | %.1f s |\n", n, median(create), median(rec), duration(median(recTime)), strings.Join(parts, ", "), median(cpu))
	}
	w("\nThe identity floor sends exactly 1 PUT (status) per request. Signer time is the mean wall time of a signer reconcile (including the one its own status write triggers, which finds the request concluded and returns), API round trips and client-side rate-limit waits included.\n")
}
