package xds

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discoveryservice "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	endpointservice "github.com/envoyproxy/go-control-plane/envoy/service/endpoint/v3"
	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	secretservice "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/go-logr/logr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
)

// Options configure a Server.
type Options struct {
	// Address is where Start listens, host:port (":18000" on every interface).
	Address string
	// TLS is the server side of the channel: its certificate (GetCertificate
	// lets it rotate) and ClientCAs, or GetConfigForClient for both. A client
	// certificate is always required and verified, whatever ClientAuth says.
	TLS *tls.Config
	// Authorize decides whether the client whose certificate proved spiffeID
	// may fetch the config node asks for (ParseNode tells which MeshService or
	// gateway that is). Called once per stream, at its first request, with a
	// node ParseNode accepts; an error refuses the stream with PermissionDenied.
	Authorize func(node *corev3.Node, spiffeID string) error
	// OnChange, if set, is called with a NodeKey whenever its Status
	// changes (a stream opened or closed, an ACK of a new version, a NACK). It
	// runs on the stream's goroutine, so it must not block: enqueue and return.
	OnChange func(key string)
	// Log receives refusals and the library's own messages (V(1) and up).
	Log logr.Logger
}

// Server serves ADS, and the per-type CDS, EDS, LDS and SDS streams, over
// gRPC with TLS, from a snapshot per node. It is a controller-runtime
// Runnable that runs on every replica.
type Server struct {
	opts       Options
	cache      cachev3.SnapshotCache
	status     *tracker
	callbacks  *callbacks
	snapshotMu sync.Mutex // serializes snapshot writers: SetEndpoints reads, then writes
	serving    atomic.Bool
	synced     atomic.Bool
}

// New checks the options and makes a Server with no snapshot yet.
func New(opts Options) (*Server, error) {
	if opts.TLS == nil {
		return nil, errors.New("xds: Options.TLS is required: the channel carries each sidecar's config and is authenticated")
	}
	if opts.TLS.ClientCAs == nil && opts.TLS.GetConfigForClient == nil {
		return nil, errors.New("xds: Options.TLS has no ClientCAs: client certificates would be verified against the system roots")
	}
	if opts.Authorize == nil {
		return nil, errors.New("xds: Options.Authorize is required")
	}
	s := &Server{opts: opts, status: newTracker(opts.OnChange)}
	// ads=true: EDS is answered only once a request names every endpoint
	// resource, so Envoy gets clusters before their endpoints (see consistent).
	s.cache = cachev3.NewSnapshotCache(true, nodeKeyHash{}, libraryLogger{opts.Log})
	s.callbacks = &callbacks{authorize: opts.Authorize, status: s.status, clear: s.cache.ClearSnapshot, log: opts.Log}
	return s, nil
}

// NeedLeaderElection is false: every replica serves, so sidecars connect to
// whichever replica the Service picks; only status writes need the leader.
func (s *Server) NeedLeaderElection() bool { return false }

// Start listens on Options.Address and serves until ctx ends.
func (s *Server) Start(ctx context.Context) error {
	if s.opts.Address == "" {
		return errors.New("xds: Options.Address is empty")
	}
	var lc net.ListenConfig
	lis, err := lc.Listen(ctx, "tcp", s.opts.Address)
	if err != nil {
		return fmt.Errorf("xds: listen on %s: %w", s.opts.Address, err)
	}
	return s.Serve(ctx, lis)
}

// shutdownGrace bounds how long Serve waits for in-flight sends at shutdown.
const shutdownGrace = 5 * time.Second

// Serve serves on lis until ctx ends, then ends every stream (Envoy reconnects,
// through the Service, to another replica) and closes lis.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	return s.serve(ctx, lis, watcher{s.cache})
}

// serve is Serve from cache; tests serve from the library's cache alone.
func (s *Server) serve(ctx context.Context, lis net.Listener, cache cachev3.Cache) error {
	// Streams end with this context (the library's stream loops watch it),
	// and so does Serve, if the listener fails first.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	xds := serverv3.NewServer(ctx, cache, s.callbacks,
		sotw.WithOrderedADS(), // one queue per stream: CDS before EDS before LDS, as the snapshot orders them
		sotw.WithLogger(libraryLogger{s.opts.Log}),
	)
	g := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(requireClientCert(s.opts.TLS))),
		// A dead sidecar (node gone, no FIN) is noticed within a minute and
		// its stream closed; Envoy's own keepalives are allowed.
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		// A thousand mostly idle streams should not each pin 64 KiB of
		// buffers: write buffers only while writing, and a read buffer sized
		// for discovery requests (a node and a few names), not for bulk.
		grpc.SharedWriteBuffer(true),
		grpc.ReadBufferSize(8<<10),
	)
	discoveryservice.RegisterAggregatedDiscoveryServiceServer(g, xds)
	clusterservice.RegisterClusterDiscoveryServiceServer(g, xds)
	endpointservice.RegisterEndpointDiscoveryServiceServer(g, xds)
	listenerservice.RegisterListenerDiscoveryServiceServer(g, xds)
	secretservice.RegisterSecretDiscoveryServiceServer(g, xds)

	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		s.serving.Store(false)
		graceful := make(chan struct{})
		go func() { g.GracefulStop(); close(graceful) }()
		select {
		case <-graceful:
		case <-time.After(shutdownGrace):
			g.Stop()
		}
	}()
	s.serving.Store(true)
	err := g.Serve(lis)
	cancel()
	<-stopped
	return err
}

// requireClientCert is c with client certificates required and verified
// against its own ClientCAs, also in any config GetConfigForClient returns:
// the stream's authentication rests on the verified chain.
func requireClientCert(c *tls.Config) *tls.Config {
	c = c.Clone()
	c.ClientAuth = tls.RequireAndVerifyClientCert
	if c.MinVersion < tls.VersionTLS12 {
		c.MinVersion = tls.VersionTLS12
	}
	if get := c.GetConfigForClient; get != nil {
		c.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			cc, err := get(hello)
			if err != nil || cc == nil {
				return cc, err
			}
			if cc.ClientCAs == nil {
				return nil, errors.New("no client CAs to verify the client certificate with")
			}
			cc = cc.Clone()
			cc.ClientAuth = tls.RequireAndVerifyClientCert
			if cc.MinVersion < tls.VersionTLS12 {
				cc.MinVersion = tls.VersionTLS12
			}
			return cc, nil
		}
	}
	return c
}

// MarkSynced tells the server that the controller's caches synced and every
// node's snapshot is set: a replica that served before would hand reconnecting
// sidecars nothing (or an old config) and must not receive them yet.
func (s *Server) MarkSynced() { s.synced.Store(true) }

// Ready is true while the server serves and after MarkSynced.
func (s *Server) Ready() bool { return s.serving.Load() && s.synced.Load() }

// ReadyCheck is Ready as a controller-runtime healthz.Checker, for the
// readiness probe: the Service sends sidecars only to ready replicas.
func (s *Server) ReadyCheck(*http.Request) error {
	switch {
	case !s.serving.Load():
		return errors.New("xds server not serving")
	case !s.synced.Load():
		return errors.New("xds snapshots not synced yet")
	}
	return nil
}

// Status is what the streams of key's proxies have told this replica. It copies, so it
// may be called freely; cost is one map lookup and the node's own entries.
func (s *Server) Status(key string) NodeStatus { return s.status.status(key) }

// Keys lists the keys (see NodeKey) that have a stream open on this replica,
// sorted: what a report of this replica's streams covers.
func (s *Server) Keys() []string { return s.status.keys() }

// libraryLogger hands go-control-plane's messages to logr, formatting only
// what is enabled: the cache logs every response at debug level.
type libraryLogger struct{ log logr.Logger }

func (l libraryLogger) Debugf(format string, args ...any) { l.at(2, format, args) }
func (l libraryLogger) Infof(format string, args ...any)  { l.at(1, format, args) }
func (l libraryLogger) Warnf(format string, args ...any)  { l.at(1, format, args) }
func (l libraryLogger) Errorf(format string, args ...any) {
	l.log.Error(fmt.Errorf(format, args...), "go-control-plane")
}

func (l libraryLogger) at(level int, format string, args []any) {
	if v := l.log.V(level); v.Enabled() {
		v.Info(fmt.Sprintf(format, args...))
	}
}
