package buildscripts

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// upstreamMod stands for k8s.io/kubernetes's go.mod: the script turns its staging
// replacements into replacements by version.
const upstreamMod = `module k8s.io/kubernetes

go 1.25.0

replace (
	k8s.io/api => ./staging/src/k8s.io/api
	k8s.io/client-go => ./staging/src/k8s.io/client-go
)
`

// Versions handed to the scripts, so the tests do not depend on their defaults.
var versionEnv = []string{
	"K8S_VERSION=v1.99.0", "K8S_STAGING_VERSION=v0.99.0", "ETCD_VERSION=v3.99.0",
	"KWOK_VERSION=v0.99.0", "OLM_VERSION=v0.99.0", "OPM_VERSION=v1.99.0",
	"OPERATOR_SDK_VERSION=v1.99.0",
}

// waitTimeout bounds every wait of these tests; it only turns a hang into a failure.
const waitTimeout = 60 * time.Second

// TestConcurrentBuilds runs each build script twice at once on one cache, as two
// clones or two CI jobs on one machine do. The fake go holds the first run at its
// first call until the second run has either started its own go (the scripts before
// issue 14 did) or said it waits for the first; then both go on. Both runs must
// succeed, each binary must be built once, and the second run must copy the
// first one's result.
func TestConcurrentBuilds(t *testing.T) {
	cases := []struct {
		name   string
		script string
		// argsA and argsB follow the destination; operator-sdk's destination is a file.
		argsA, argsB []string
		destFile     string
		built        []string // names the fake go builds, once each
		installedA   []string
		installedB   []string
		check        func(t *testing.T, h *harness)
	}{
		{
			name:       "k8s same binaries",
			script:     "build-k8s-binaries.sh",
			argsA:      []string{"kube-apiserver", "kubectl", "etcd"},
			argsB:      []string{"kube-apiserver", "kubectl", "etcd"},
			built:      []string{"kube-apiserver", "kubectl", "etcdbuild"},
			installedA: []string{"kube-apiserver", "kubectl", "etcd"},
			installedB: []string{"kube-apiserver", "kubectl", "etcd"},
			check:      checkK8sModule,
		},
		{
			name:       "k8s different binaries share the module",
			script:     "build-k8s-binaries.sh",
			argsA:      []string{"kube-apiserver"},
			argsB:      []string{"kubectl"},
			built:      []string{"kube-apiserver", "kubectl"},
			installedA: []string{"kube-apiserver"},
			installedB: []string{"kubectl"},
			check:      checkK8sModule,
		},
		{
			name:       "etcd",
			script:     "build-k8s-binaries.sh",
			argsA:      []string{"etcd"},
			argsB:      []string{"etcd"},
			built:      []string{"etcdbuild"},
			installedA: []string{"etcd"},
			installedB: []string{"etcd"},
		},
		{
			name:       "kwok",
			script:     "build-kwok.sh",
			built:      []string{"kwok", "kwokctl"},
			installedA: []string{"kwok", "kwokctl"},
			installedB: []string{"kwok", "kwokctl"},
		},
		{
			name:       "olm",
			script:     "build-olm.sh",
			built:      []string{"olm", "catalog", "opm"},
			installedA: []string{"olm", "catalog", "opm"},
			installedB: []string{"olm", "catalog", "opm"},
		},
		{
			name:       "operator-sdk",
			script:     "build-operator-sdk.sh",
			destFile:   "operator-sdk",
			built:      []string{"operator-sdk"},
			installedA: []string{"operator-sdk"},
			installedB: []string{"operator-sdk"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			a := h.start(t, "A", tc.script, tc.destFile, tc.argsA)
			h.waitFor(t, "run A's first go call", func() bool { return h.logHas("A start ") })
			b := h.start(t, "B", tc.script, tc.destFile, tc.argsB)
			// The second run has reached the contended build when it either waits
			// for the first or runs go itself.
			h.waitFor(t, "run B to wait for run A or to run go itself", func() bool {
				return strings.Contains(b.stderr.String(), "waiting for") || h.logHas("B start ")
			})
			h.release(t)

			for _, r := range []*run{a, b} {
				if err := r.wait(); err != nil {
					t.Errorf("run %s: %v\n%s", r.name, err, r.stderr.String())
				}
			}
			for _, name := range tc.built {
				if n := h.count(" built " + name); n != 1 {
					t.Errorf("%s built %d times, want once", name, n)
				}
			}
			if t.Failed() {
				t.Logf("fake go log:\n%s", h.log())
			}
			checkInstalled(t, a, tc.installedA)
			checkInstalled(t, b, tc.installedB)
			checkNoTemporaries(t, h.cache)
			if tc.check != nil {
				tc.check(t, h)
			}
		})
	}
}

// checkK8sModule checks that the shared build module was prepared once and whole.
func checkK8sModule(t *testing.T, h *harness) {
	t.Helper()
	if n := h.count(" start mod download -json k8s.io/kubernetes@v1.99.0"); n != 1 {
		t.Errorf("build module prepared %d times, want once", n)
	}
	dir := filepath.Join(h.cache, "envoymesh-operator", "src", "k8s-v1.99.0")
	gomod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		t.Fatalf("build module: %v", err)
	}
	for _, want := range []string{
		"require k8s.io/kubernetes v1.99.0",
		"replace k8s.io/api => k8s.io/api v0.99.0",
		"replace k8s.io/client-go => k8s.io/client-go v0.99.0",
	} {
		if strings.Count(string(gomod), want) != 1 {
			t.Errorf("build module's go.mod has %q %d times, want once:\n%s", want, strings.Count(string(gomod), want), gomod)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "go.sum")); err != nil {
		t.Errorf("build module: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "tools.go")); err == nil {
		t.Errorf("build module keeps tools.go")
	}
}

// checkNoTemporaries checks that the runs left no temporary files in the cache.
func checkNoTemporaries(t *testing.T, cache string) {
	t.Helper()
	err := filepath.WalkDir(cache, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.Contains(d.Name(), ".tmp") {
			t.Errorf("temporary left in the cache: %s", path)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}

func checkInstalled(t *testing.T, r *run, names []string) {
	t.Helper()
	for _, name := range names {
		path := filepath.Join(r.dest, name)
		if r.destFile != "" {
			path = r.dest
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Errorf("run %s: %v", r.name, err)
			continue
		}
		if fi.Mode().Perm()&0o111 == 0 {
			t.Errorf("run %s: %s is not executable (%v)", r.name, path, fi.Mode())
		}
	}
}

// harness is one cache, one fake go and its log, shared by the runs of one case.
type harness struct {
	dir, cache, bin, logPath, gate string
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	dir := t.TempDir()
	h := &harness{
		dir:     dir,
		cache:   filepath.Join(dir, "cache"),
		bin:     filepath.Join(dir, "bin"),
		logPath: filepath.Join(dir, "go.log"),
		gate:    filepath.Join(dir, "gate"),
	}
	fake, err := os.ReadFile(filepath.Join("testdata", "fakego.sh"))
	if err != nil {
		t.Fatal(err)
	}
	for path, data := range map[string][]byte{
		filepath.Join(h.bin, "go"):         fake,
		filepath.Join(dir, "upstream.mod"): []byte(upstreamMod),
		h.logPath:                          nil,
	} {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return h
}

type run struct {
	name, dest, destFile string
	cmd                  *exec.Cmd
	stderr               *syncBuffer
	done                 chan error
}

func (r *run) wait() error {
	select {
	case err := <-r.done:
		return err
	case <-time.After(waitTimeout):
		_ = r.cmd.Process.Kill()
		return <-r.done
	}
}

func (h *harness) start(t *testing.T, name, script, destFile string, args []string) *run {
	t.Helper()
	r := &run{name: name, dest: filepath.Join(h.dir, "dest-"+name), destFile: destFile, stderr: &syncBuffer{}, done: make(chan error, 1)}
	if destFile != "" {
		if err := os.MkdirAll(r.dest, 0o755); err != nil {
			t.Fatal(err)
		}
		r.dest = filepath.Join(r.dest, destFile)
	}
	scriptPath, err := filepath.Abs(filepath.Join("..", script))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	r.cmd = exec.CommandContext(ctx, "bash", append([]string{scriptPath, r.dest}, args...)...)
	r.cmd.Dir = h.dir
	r.cmd.Env = append(slices.Clone(os.Environ()), versionEnv...)
	r.cmd.Env = append(r.cmd.Env,
		"PATH="+h.bin+string(os.PathListSeparator)+os.Getenv("PATH"),
		"XDG_CACHE_HOME="+h.cache,
		"HOME="+h.dir,
		"FAKE_GO_RUN="+name,
		"FAKE_GO_LOG="+h.logPath,
		"FAKE_GO_GATE="+h.gate,
		"FAKE_GO_UPSTREAM_MOD="+filepath.Join(h.dir, "upstream.mod"),
	)
	r.cmd.Stderr = r.stderr
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.done <- r.cmd.Wait() }()
	return r
}

// release lets every held and later go call proceed.
func (h *harness) release(t *testing.T) {
	t.Helper()
	if err := os.WriteFile(h.gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

func (h *harness) log() string {
	data, _ := os.ReadFile(h.logPath)
	return string(data)
}

func (h *harness) logHas(prefix string) bool {
	for line := range strings.Lines(h.log()) {
		if strings.HasPrefix(line, prefix) {
			return true
		}
	}
	return false
}

func (h *harness) count(suffix string) int {
	n := 0
	for line := range strings.Lines(h.log()) {
		if strings.HasSuffix(strings.TrimSuffix(line, "\n"), suffix) {
			n++
		}
	}
	return n
}

// waitFor polls cond, an observable state, until it holds; the deadline only turns a
// hang into a failure.
func (h *harness) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			h.release(t)
			t.Fatalf("timed out waiting for %s; fake go log:\n%s", what, h.log())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a concurrent reader.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
