package xds

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discoveryservice "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/go-logr/logr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/envoymesh/envoymesh-operator/internal/envoyconfig"
	"github.com/envoymesh/envoymesh-operator/internal/xds/fleetsim"
)

// benchFleetSize is the fleet the numbers are about.
const benchFleetSize = 1000

// benchFleet is benchFleetSize sidecars, one per MeshService, each converged
// on the first of its two configs, which the benchmarks alternate between.
type benchFleet struct {
	servers []*testServer
	fleet   *fleetsim.Fleet
	keys    []string
	configs [][2]*envoyconfig.Resources
	current []int
	// heapPerSidecar is the heap the connected fleet added, server and
	// simulator together (they share the process), in KiB per sidecar.
	heapPerSidecar float64
}

// report adds the fleet's heap to the benchmark's metrics; b.Loop resets
// metrics reported before it.
func (f *benchFleet) report(b *testing.B) {
	b.ReportMetric(f.heapPerSidecar, "heap-KiB/sidecar")
}

// newBenchFleet starts servers (one per serve function) with every
// snapshot, and the fleet on the first.
func newBenchFleet(b *testing.B, serveFns ...func(*Server) func(context.Context, net.Listener) error) *benchFleet {
	b.Helper()
	p := newPKI(b)
	f := &benchFleet{}
	for _, fn := range serveFns {
		ch := newChanges()
		srv, err := New(Options{TLS: p.serverTLS(b), Authorize: authorizeByServiceAccount, OnChange: ch.record, Log: logr.Discard()})
		if err != nil {
			b.Fatal(err)
		}
		f.servers = append(f.servers, serve(b, srv, ch, fn(srv)))
	}
	var cfgs []fleetsim.Config
	for i := range benchFleetSize {
		name := fmt.Sprintf("svc-%04d", i)
		key := NodeKey(name, "bench")
		pair := [2]*envoyconfig.Resources{
			sidecarResources(b, "bench", name, 8080, "127.0.0.10", "127.0.0.11"),
			sidecarResources(b, "bench", name, 8081, "127.0.0.10", "127.0.0.11"),
		}
		for _, srv := range f.servers {
			if err := srv.SetSnapshot(context.Background(), key, pair[0]); err != nil {
				b.Fatal(err)
			}
		}
		f.keys = append(f.keys, key)
		f.configs = append(f.configs, pair)
		f.current = append(f.current, 0)
		cfgs = append(cfgs, fleetsim.Config{
			Target: f.servers[0].addr,
			TLS:    p.clientTLS(b, "bench", name),
			Node:   &corev3.Node{Id: name + "-pod.bench", Cluster: name},
			// As ADSDelivery's bootstrap sets it.
			NodeOnFirstRequestOnly: true,
		})
	}
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fleet, err := fleetsim.StartFleet(cfgs)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(fleet.Close)
	f.fleet = fleet
	f.waitAll(b)
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	// XDS_BENCH_HEAPPROFILE=file writes the heap of the connected fleet, to
	// tell the server's share from the simulator's (go tool pprof -focus).
	if path := os.Getenv("XDS_BENCH_HEAPPROFILE"); path != "" {
		out, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		if err := pprof.Lookup("heap").WriteTo(out, 0); err != nil {
			b.Fatal(err)
		}
		_ = out.Close()
	}
	f.heapPerSidecar = float64(after.HeapInuse-before.HeapInuse) / benchFleetSize / 1024
	return f
}

func (f *benchFleet) config(i int) *envoyconfig.Resources { return f.configs[i][f.current[i]] }

// waitAll waits until every sidecar runs its current config.
func (f *benchFleet) waitAll(b *testing.B) {
	b.Helper()
	ctx := waitCtx(b)
	for i, s := range f.fleet.Sidecars {
		res := f.config(i)
		err := s.WaitFor(ctx, func(st *fleetsim.State) bool {
			return st.Acked[ListenerType] == res.Version && st.Acked[ClusterType] == res.Version && st.Acked[EndpointType] == res.EndpointsVersion
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// flip moves sidecar i to its other config on server 0.
func (f *benchFleet) flip(b *testing.B, i int) *envoyconfig.Resources {
	f.current[i] = 1 - f.current[i]
	res := f.config(i)
	if err := f.servers[0].SetSnapshot(context.Background(), f.keys[i], res); err != nil {
		b.Fatal(err)
	}
	return res
}

// serveOurs serves as the manager does; serveLibrary is the floor:
// go-control-plane's server on the bare snapshot cache, without our
// callbacks (no authorization, no status) or watcher.
func serveOurs(srv *Server) func(context.Context, net.Listener) error { return srv.Serve }

func serveLibrary(srv *Server) func(context.Context, net.Listener) error {
	return func(ctx context.Context, lis net.Listener) error {
		xds := serverv3.NewServer(ctx, srv.cache, nil, sotw.WithOrderedADS(), sotw.WithLogger(libraryLogger{logr.Discard()}))
		g := grpc.NewServer(grpc.Creds(credentials.NewTLS(requireClientCert(srv.opts.TLS))), grpc.SharedWriteBuffer(true))
		discoveryservice.RegisterAggregatedDiscoveryServiceServer(g, xds)
		clusterservice.RegisterClusterDiscoveryServiceServer(g, xds)
		go func() { <-ctx.Done(); g.Stop() }()
		return g.Serve(lis)
	}
}

var servers = []struct {
	name  string
	serve func(*Server) func(context.Context, net.Listener) error
}{{"server=ours", serveOurs}, {"server=library", serveLibrary}}

// BenchmarkFleetPushAll: every one of 1000 configs changes at once (listeners
// and clusters); one op lasts until all 1000 sidecars ACKed.
func BenchmarkFleetPushAll(b *testing.B) {
	for _, s := range servers {
		b.Run(s.name, func(b *testing.B) {
			f := newBenchFleet(b, s.serve)
			b.ResetTimer()
			for b.Loop() {
				for i := range f.keys {
					f.flip(b, i)
				}
				f.waitAll(b)
			}
			f.report(b)
		})
	}
}

// BenchmarkFleetPushOne: one MeshService's config changes while 1000
// sidecars are connected; one op lasts until its sidecar ACKed. p50 and p99
// are of the ops.
func BenchmarkFleetPushOne(b *testing.B) {
	for _, s := range servers {
		b.Run(s.name, func(b *testing.B) {
			f := newBenchFleet(b, s.serve)
			var took []time.Duration
			ctx := waitCtx(b)
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				n := i % benchFleetSize
				start := time.Now()
				res := f.flip(b, n)
				if err := f.fleet.Sidecars[n].WaitAcked(ctx, ListenerType, res.Version); err != nil {
					b.Fatal(err)
				}
				took = append(took, time.Since(start))
			}
			reportPercentiles(b, took)
			f.report(b)
		})
	}
}

// BenchmarkFleetEndpoints: an EndpointSlice change reaches all 1000 sidecars
// (EDS only); one op lasts until all ACKed it.
func BenchmarkFleetEndpoints(b *testing.B) {
	f := newBenchFleet(b, serveOurs)
	before := f.fleet.Counters()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		addr := fmt.Sprintf("127.0.%d.%d", 1+i/250%250, 1+i%250)
		for n := range f.keys {
			for k := range f.configs[n] {
				f.configs[n][k] = withEndpoints(b, f.configs[n][k], "bench", addr)
			}
			if err := f.servers[0].SetSnapshot(context.Background(), f.keys[n], f.config(n)); err != nil {
				b.Fatal(err)
			}
		}
		f.waitAll(b)
	}
	b.StopTimer()
	after := f.fleet.Counters()
	b.ReportMetric(float64(after.Responses-before.Responses)/float64(b.N)/benchFleetSize, "responses/sidecar/op")
	f.report(b)
}

// BenchmarkFleetReconnect: all 1000 sidecars move to the other replica at
// once (same snapshots); one op lasts until that replica's status shows every
// one of them in sync. Nothing is pushed: pushes/op counts what was.
func BenchmarkFleetReconnect(b *testing.B) {
	f := newBenchFleet(b, serveOurs, serveOurs)
	before := f.fleet.Counters()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		to := f.servers[(i+1)%2]
		if err := f.fleet.ReconnectAll(to.addr); err != nil {
			b.Fatal(err)
		}
		to.waitAllSynced(b, f.keys)
	}
	b.StopTimer()
	after := f.fleet.Counters()
	b.ReportMetric(float64(after.Responses-before.Responses)/float64(b.N), "pushes/op")
	f.report(b)
}

func reportPercentiles(b *testing.B, took []time.Duration) {
	if len(took) == 0 {
		return
	}
	slices.Sort(took)
	at := func(q float64) time.Duration { return took[min(len(took)-1, int(q*float64(len(took))))] }
	b.ReportMetric(float64(at(0.50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(at(0.99).Microseconds())/1000, "p99-ms")
}

// waitAllSynced waits, on OnChange, until every key's one proxy is in sync.
func (srv *testServer) waitAllSynced(b *testing.B, keys []string) {
	b.Helper()
	ctx := waitCtx(b)
	for _, key := range keys {
		for {
			next := srv.changes.next()
			if st := srv.Status(key); len(st.Proxies) == 1 && st.Proxies[0].Synced(st.Snapshot) {
				break
			}
			select {
			case <-next:
			case <-ctx.Done():
				b.Fatalf("%s: %v", key, ctx.Err())
			}
		}
	}
}
