package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
)

// goBench is one `go test -bench` invocation whose figures go in the report.
type goBench struct {
	pkg, pattern string
}

var goBenches = []goBench{
	{"./internal/envoyconfig/", "BuildSidecar"},
	{"./internal/prober/", "Sweep1000"},
	// The signer's cost per certificate: judge + CA.Issue, and all of Reconcile
	// with in-memory reads; BenchmarkIssue is the signature alone.
	{"./controllers/", "SignRequest"},
	{"./internal/identity/", "Issue"},
	// The callee's config with 10, 100 and 1000 callers, beside 10 and 1000
	// unrelated services: its cost and its bytes (lds-B, data-B).
	{"./internal/envoyconfig/", "AuthzCallee"},
}

// benchTargets are the targets of the benchmarks that have one, by name prefix:
// the most ns/op the median of the runs may take.
var benchTargets = map[string]struct {
	label string
	maxNS float64
}{
	"BenchmarkSignRequest": {"≤ 1 ms per certificate", 1e6},
}

// benchFigures are the per-run values of one benchmark, by unit (ns/op, allocs/op, …).
type benchFigures struct {
	name  string
	units map[string][]float64
	skip  string
}

// target is the Target cell of the benchmark's row; all are the figures of the
// whole run, for the targets that compare benchmarks.
func (b *benchFigures) target(all []*benchFigures) string {
	if t, ok := authzCalleeTarget(b, all); ok {
		return t
	}
	for prefix, t := range benchTargets {
		if strings.HasPrefix(b.name, prefix) {
			return t.label + ": " + verdict(median(b.units["ns/op"]) <= t.maxNS)
		}
	}
	return ""
}

func (g goBench) args(count int) []string {
	return []string{"test", "-run", "^$", "-bench", g.pattern, "-benchmem", "-count", strconv.Itoa(count), g.pkg}
}

func (g goBench) command(count int) string {
	a := g.args(count)
	a[2] = "'^$'"
	return "go " + strings.Join(a, " ")
}

var procsSuffix = regexp.MustCompile(`-\d+$`)

// runGoBenchmarks runs the builder and prober benchmarks -count=runs times each.
func runGoBenchmarks(ctx context.Context, o options, res *results) error {
	for _, g := range goBenches {
		logf("running %s", g.command(o.runs))
		cmd := exec.CommandContext(ctx, "go", g.args(o.runs)...)
		cmd.Dir = o.repo
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			return fmt.Errorf("%s: %w\n%s", g.command(o.runs), err, out)
		}
		figs, err := parseBench(out)
		if err != nil {
			return fmt.Errorf("%s: %w", g.command(o.runs), err)
		}
		if len(figs) == 0 {
			figs = []*benchFigures{{name: "Benchmark" + g.pattern, skip: skipReason(out)}}
		}
		res.goBench = append(res.goBench, figs...)
	}
	return nil
}

// parseBench reads `go test -bench` output: "BenchmarkX/sub-2  N  v unit  v unit …".
func parseBench(out []byte) ([]*benchFigures, error) {
	var list []*benchFigures
	byName := map[string]*benchFigures{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue
		}
		name := procsSuffix.ReplaceAllString(f[0], "")
		b := byName[name]
		if b == nil {
			b = &benchFigures{name: name, units: map[string][]float64{}}
			byName[name] = b
			list = append(list, b)
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, fmt.Errorf("parsing %q: %w", sc.Text(), err)
			}
			b.units[f[i+1]] = append(b.units[f[i+1]], v)
		}
	}
	return list, sc.Err()
}

func skipReason(out []byte) string {
	lines := strings.Split(string(out), "\n")
	for i, line := range lines {
		if strings.Contains(line, "--- SKIP") && i+1 < len(lines) {
			return strings.TrimSpace(line) + ": " + strings.TrimSpace(lines[i+1])
		}
	}
	return "no result (skipped?)"
}

// authzCalleeTarget compares a BenchmarkAuthzCallee/callers=C/unrelated=U row
// with the others: the callee's bytes must not change with U (flat in mesh size)
// and must grow with C.
func authzCalleeTarget(b *benchFigures, all []*benchFigures) (string, bool) {
	var c, u int
	if _, err := fmt.Sscanf(b.name, "BenchmarkAuthzCallee/callers=%d/unrelated=%d", &c, &u); err != nil {
		return "", false
	}
	bytes := func(callers, unrelated int) (float64, bool) {
		for _, o := range all {
			if o.name == fmt.Sprintf("BenchmarkAuthzCallee/callers=%d/unrelated=%d", callers, unrelated) && len(o.units["data-B"]) > 0 {
				return median(o.units["data-B"]), true
			}
		}
		return 0, false
	}
	mine, _ := bytes(c, u)
	var parts []string
	if base, ok := bytes(c, 10); ok && u != 10 {
		parts = append(parts, "flat in mesh size (vs unrelated=10): "+verdict(mine == base))
	}
	var fewer int
	for _, o := range all {
		var oc, ou int
		if _, err := fmt.Sscanf(o.name, "BenchmarkAuthzCallee/callers=%d/unrelated=%d", &oc, &ou); err == nil && ou == u && oc < c && oc > fewer {
			fewer = oc
		}
	}
	if prev, ok := bytes(fewer, u); ok && fewer > 0 {
		parts = append(parts, fmt.Sprintf("grows with callers (vs %d): %s", fewer, verdict(mine > prev)))
	}
	return strings.Join(parts, "; "), true
}
