//go:build unix

package prober

import (
	"context"
	"strconv"
	"syscall"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/client"
)

// BenchmarkSweep1000 measures one Sweep over 1000 running pods, 10 per MeshService, each with its
// own stub sidecar on 127.0.1.1-127.0.4.250, probed 64 at a time. The stubs are set up once, outside
// the timing. Run it with:
//
//	go test -run '^$' -bench Sweep1000 -benchmem ./internal/prober/
//
// It needs about 1200 file descriptors (1000 listeners plus the connections of 64 probes in
// flight and the idle pool) and is skipped when the limit is lower; Go raises the soft limit to the
// hard one at start-up, so `ulimit -Hn` is what counts. The time includes the fake client's list of
// 1000 pods, which deep-copies them where the manager's cache would not.
func BenchmarkSweep1000(b *testing.B) {
	const pods, perService = 1000, 10
	var limit syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &limit); err != nil {
		b.Fatal(err)
	}
	if limit.Cur < 2048 {
		b.Skipf("open file limit %d is below 2048", limit.Cur)
	}

	port := statusPort(b)
	objs := make([]client.Object, 0, pods)
	for i := range pods {
		ip := "127.0." + strconv.Itoa(1+i/250) + "." + strconv.Itoa(1+i%250)
		sidecar(b, ip, port)
		service := "svc-" + strconv.Itoa(i/perService)
		objs = append(objs, pod(ns, service+"-"+strconv.Itoa(i%perService), service, ip))
	}
	p, _ := newProber(b, port, Options{Concurrency: 64}, objs...)

	// One sweep before timing fills the cache, so the timed ones measure the steady state (no
	// events), and checks that every stub really answered.
	ctx := context.Background()
	p.Sweep(ctx)
	for i := range pods / perService {
		for _, o := range p.Observations(key(ns, "svc-"+strconv.Itoa(i))) {
			if o.Error != "" {
				b.Fatalf("%s: %s", o.Pod, o.Error)
			}
		}
	}

	b.ReportAllocs()
	cpuBefore := cpuTime(b)
	for b.Loop() {
		p.Sweep(ctx)
	}
	// Process CPU (user+system) per sweep: the prober's and the 1000 stubs' together,
	// since they share the process; an upper bound on what the prober costs.
	b.ReportMetric(float64(cpuTime(b)-cpuBefore)/float64(b.N), "cpu-ns/op")
}

func cpuTime(b *testing.B) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
