package envoyconfig

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/envoymesh/envoymesh-operator/api/v1alpha1"
)

const (
	inboundListenerName = "inbound"

	// Names of the inbound filter chains when the service has an identity.
	mtlsChainName      = "mtls"
	plaintextChainName = "plaintext"

	tlsInspectorName     = "envoy.filters.listener.tls_inspector"
	tlsTransportProtocol = "tls"
	// permissiveDetectTimeout bounds how long a Permissive listener waits for a
	// client's first bytes to tell mesh mTLS from plaintext.
	permissiveDetectTimeout = time.Second

	// noCallerSAN is the one SAN a TCP service in Enforce with no authorized
	// caller accepts: no certificate can name the .invalid domain, and no SAN
	// matcher at all would accept every mesh identity.
	noCallerSAN = "spiffe://envoymesh.invalid/no-authorized-callers"

	hcmFilterName      = "envoy.filters.network.http_connection_manager"
	tcpProxyFilterName = "envoy.filters.network.tcp_proxy"
	routerFilterName   = "envoy.filters.http.router"

	websocketUpgrade = "websocket"

	// defaultRetryOn applies when a policy asks for retries without saying on what:
	// failures that are safe to retry plus 5xx, and their gRPC equivalents.
	defaultRetryOn = "5xx,connect-failure,refused-stream,unavailable,cancelled"
)

// egressListenerName keys the listener by its port: Envoy identifies a listener by
// name, so a stable name for a stable address lets an upstream change on the same
// localPort update the listener in place instead of racing for the port.
func egressListenerName(localPort int32) string {
	return fmt.Sprintf("egress_%d", localPort)
}

// egressStatPrefix names the upstream in stats; names and namespaces are DNS labels,
// so "_" cannot be ambiguous, and dots would split the stat into extra segments.
func egressStatPrefix(u Upstream) string {
	return "egress_" + u.Name + "_" + u.Namespace
}

// inboundListener accepts callers on every interface at servicePort and hands their
// requests to the application on loopback: in plaintext without svc.Security,
// otherwise over mutual TLS and through authorization, with a plaintext chain
// beside it in Permissive mode.
func inboundListener(svc Service, tel *telemetry) (*listenerv3.Listener, error) {
	l, err := inboundListenerSpec(svc, tel)
	if err != nil {
		return nil, fmt.Errorf("listener %q: %w", inboundListenerName, err)
	}
	return validListener(tel.direction(l, corev3.TrafficDirection_INBOUND))
}

func inboundListenerSpec(svc Service, tel *telemetry) (*listenerv3.Listener, error) {
	l := &listenerv3.Listener{Name: inboundListenerName, Address: socketAddress(anyAddress, svc.ServicePort)}
	if svc.Security == nil {
		plain, err := inboundFilters(svc.Protocol, nil, tel)
		if err != nil {
			return nil, err
		}
		l.FilterChains = []*listenerv3.FilterChain{filterChain(nil, plain...)}
		return l, nil
	}
	mtls, err := inboundMTLSChain(svc, tel)
	if err != nil {
		return nil, err
	}
	// Rooted at listener.inbound.*, so the TLS stats are listener.inbound.ssl.*
	// rather than keyed by the address.
	l.StatPrefix = inboundListenerName
	l.FilterChains = []*listenerv3.FilterChain{mtls}
	if svc.Security.MTLS != v1alpha1.MTLSPermissive {
		return l, nil
	}
	return permissive(l, svc.Protocol, tel)
}

// permissive lets l's mTLS chain take only connections that offer MeshALPN in a
// TLS ClientHello, and sends every other connection, plaintext or TLS the app
// terminates itself, to a plaintext chain that forwards without authorization:
// its callers have no identity to authorize. It must be the default filter
// chain, not a second chain: Envoy does not backtrack, so a TLS connection
// without MeshALPN would match transport_protocol "tls" and then no chain.
func permissive(l *listenerv3.Listener, p v1alpha1.Protocol, tel *telemetry) (*listenerv3.Listener, error) {
	plain, err := inboundFilters(p, nil, tel)
	if err != nil {
		return nil, err
	}
	inspector, err := pack(&tlsinspectorv3.TlsInspector{})
	if err != nil {
		return nil, fmt.Errorf("listener filter %q: %w", tlsInspectorName, err)
	}
	l.FilterChains[0].FilterChainMatch = &listenerv3.FilterChainMatch{
		TransportProtocol:    tlsTransportProtocol,
		ApplicationProtocols: []string{MeshALPN},
	}
	l.DefaultFilterChain = filterChain(nil, plain...)
	l.DefaultFilterChain.Name = plaintextChainName
	l.ListenerFilters = []*listenerv3.ListenerFilter{{
		Name:       tlsInspectorName,
		ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: inspector},
	}}
	// A plaintext protocol where the server speaks first sends nothing for the
	// inspector to read; after a second it goes on to the plaintext chain
	// rather than being closed. Mesh clients send their ClientHello at once.
	l.ListenerFiltersTimeout = durationpb.New(permissiveDetectTimeout)
	l.ContinueOnListenerFiltersTimeout = true
	return l, nil
}

// inboundMTLSChain requires a client certificate from the mesh and authorizes
// its SPIFFE ID with the RBAC filter svc.Security asks for. HTTP leaves matching
// the ID to RBAC, whose 403 tells a caller why; the handshake only requires a
// chain to the mesh's anchors. TCP in Enforce also admits only the principals at
// the handshake: its RBAC filter decides on the client's first bytes, after
// tcp_proxy has connected to the app, where a server-first protocol has spoken.
func inboundMTLSChain(svc Service, tel *telemetry) (*listenerv3.FilterChain, error) {
	filters, err := inboundFilters(svc.Protocol, svc.Security, tel)
	if err != nil {
		return nil, err
	}
	var sans []string
	if svc.Protocol == v1alpha1.ProtocolTCP && svc.Security.Authorization == v1alpha1.AuthorizationEnforce {
		if sans = principals(svc.Security); len(sans) == 0 {
			// No SAN matchers would admit any mesh identity.
			sans = []string{noCallerSAN}
		}
	}
	socket, err := downstreamTLS(svc.Protocol, sans)
	if err != nil {
		return nil, err
	}
	fc := filterChain(socket, filters...)
	fc.Name = mtlsChainName
	return fc, nil
}

// inboundFilters forward to the app, after the RBAC filter sec asks for; nil sec
// (plaintext) has none. tel adds the access log and the tracer.
func inboundFilters(p v1alpha1.Protocol, sec *Security, tel *telemetry) ([]*listenerv3.Filter, error) {
	if p == v1alpha1.ProtocolTCP {
		var filters []*listenerv3.Filter
		if sec != nil {
			var err error
			if filters, err = networkRBAC(sec); err != nil {
				return nil, err
			}
		}
		tp, err := tcpProxy(inboundListenerName, localAppClusterName, tel)
		if err != nil {
			return nil, err
		}
		return append(filters, tp), nil
	}
	var rbac []*hcmv3.HttpFilter
	if sec != nil {
		var err error
		if rbac, err = httpRBAC(sec); err != nil {
			return nil, err
		}
	}
	// No route timeout here: callers bound their requests with their own
	// policy, and Envoy's 15s default would cut longer ones short.
	action := &routev3.RouteAction{
		ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: localAppClusterName},
		Timeout:          durationpb.New(0),
	}
	routes := []*routev3.Route{{Match: matchAll(), Action: &routev3.Route_Route{Route: action}}}
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix:     inboundListenerName,
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: routeConfig(inboundListenerName, routes)},
		UpgradeConfigs: websocketUpgrades(),
	}
	tel.http(hcm)
	filter, err := httpConnectionManagerFilter(hcm, rbac...)
	if err != nil {
		return nil, err
	}
	return []*listenerv3.Filter{filter}, nil
}

// egressListener is where the application reaches an upstream: loopback only, so
// nothing outside the pod can use the sidecar as an open proxy. An unresolved
// upstream still gets its listener, answering 503 with the reason, so the
// application sees why instead of a refused connection. tel adds the access log
// and the tracer.
func egressListener(u Upstream, tel *telemetry) (*listenerv3.Listener, error) {
	name := egressListenerName(u.LocalPort)
	var filter *listenerv3.Filter
	var err error
	switch {
	case u.Invalid != "":
		return nil, errors.New(u.Invalid)
	case u.Target == nil:
		body := fmt.Sprintf("envoymesh: upstream MeshService %q in namespace %q does not exist\n", u.Name, u.Namespace)
		routes := []*routev3.Route{{Match: matchAll(), Action: directResponse(503, body)}}
		filter, err = httpConnectionManager(egressStatPrefix(u), routeConfig(name, routes), tel)
	case u.Target.Protocol == v1alpha1.ProtocolTCP:
		filter, err = tcpProxy(egressStatPrefix(u), UpstreamClusterName(u.Name, u.Namespace), tel)
	default:
		var route *routev3.Route
		route, err = egressRoute(u)
		if err == nil {
			filter, err = httpConnectionManager(egressStatPrefix(u), routeConfig(name, []*routev3.Route{route}), tel)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("listener %q (upstream %s/%s): %w", name, u.Namespace, u.Name, err)
	}
	return validListener(tel.direction(&listenerv3.Listener{
		Name:         name,
		Address:      socketAddress(loopbackAddress, u.LocalPort),
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{filter}}},
	}, corev3.TrafficDirection_OUTBOUND))
}

// egressRoute sends everything to the upstream's cluster with the request timeout
// and retries of its traffic policy, the parts of it that live on the route.
func egressRoute(u Upstream) (*routev3.Route, error) {
	return trafficRoute(matchAll(), UpstreamClusterName(u.Name, u.Namespace), u.Target.Protocol, u.Target.Traffic)
}

// trafficRoute sends the requests that match to cluster with the parts of a traffic
// policy that live on the route: the request timeout, the retries and the hash
// policy. The built-in defaults for protocol apply first, so an HTTP2 or GRPC
// target without a timeout gets none (0s), and timeout 0s means none explicitly. hashOn only matters to RingHash and Maglev; after merging it can meet
// another load balancer (a caller that sets only loadBalancer: LeastRequest over a
// callee's RingHash and hashOn), and then it is left out, as the caller asked.
func trafficRoute(match *routev3.RouteMatch, cluster string, protocol v1alpha1.Protocol, tp v1alpha1.TrafficPolicy) (*routev3.Route, error) {
	applyTrafficDefaults(&tp, protocol)
	action := &routev3.RouteAction{
		ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster},
	}
	var err error
	if action.Timeout, err = requestTimeout(tp.Timeout, "traffic.timeout"); err != nil {
		return nil, err
	}
	if tp.HashOn != nil && isHashLB(tp.LoadBalancer) {
		action.HashPolicy = []*routev3.RouteAction_HashPolicy{{
			PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{
				Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: tp.HashOn.Header},
			},
		}}
	}
	if r := tp.Retries; r != nil {
		rp := &routev3.RetryPolicy{RetryOn: r.RetryOn}
		if rp.RetryOn == "" {
			rp.RetryOn = defaultRetryOn
		}
		if r.Attempts != nil {
			rp.NumRetries = wrapperspb.UInt32(uint32(*r.Attempts))
		}
		if rp.PerTryTimeout, err = duration(r.PerTryTimeout, "traffic.retries.perTryTimeout"); err != nil {
			return nil, err
		}
		action.RetryPolicy = rp
	}
	return &routev3.Route{Match: match, Action: &routev3.Route_Route{Route: action}}, nil
}

func validListener(l *listenerv3.Listener) (*listenerv3.Listener, error) {
	if err := l.ValidateAll(); err != nil {
		return nil, fmt.Errorf("listener %q: %w", l.Name, err)
	}
	return l, nil
}

// httpConnectionManager is the network filter of every HTTP egress listener: an
// inline route table and the router, WebSocket upgrades, plus tel's access log
// and tracer. Both typed configs are validated as they are packed.
func httpConnectionManager(statPrefix string, rc *routev3.RouteConfiguration, tel *telemetry) (*listenerv3.Filter, error) {
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix:     statPrefix,
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: rc},
		UpgradeConfigs: websocketUpgrades(),
	}
	tel.http(hcm)
	return httpConnectionManagerFilter(hcm)
}

// httpConnectionManagerFilter completes hcm with the codec and its HTTP filters
// and packs it, for listeners that need more than httpConnectionManager sets.
// The filters run in the order given, and the router, which ends every chain, is
// appended here: it always stays last, so a filter that must see requests first
// (RBAC) cannot end up behind it.
func httpConnectionManagerFilter(hcm *hcmv3.HttpConnectionManager, filters ...*hcmv3.HttpFilter) (*listenerv3.Filter, error) {
	for _, f := range filters {
		if f.GetName() == routerFilterName || f.GetTypedConfig().GetTypeUrl() == routerTypeURL {
			return nil, fmt.Errorf("http filter %q: the router is added last by the builder, not passed in", f.GetName())
		}
		if err := f.ValidateAll(); err != nil {
			return nil, fmt.Errorf("http filter %q: %w", f.GetName(), err)
		}
	}
	router, err := sharedRouter()
	if err != nil {
		return nil, err
	}
	hcm.CodecType = hcmv3.HttpConnectionManager_AUTO
	hcm.HttpFilters = append(slices.Clone(filters), router)
	packed, err := pack(hcm)
	if err != nil {
		return nil, fmt.Errorf("http_connection_manager: %w", err)
	}
	return &listenerv3.Filter{Name: hcmFilterName, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: packed}}, nil
}

// websocketUpgrades lets WebSocket upgrades through a listener that proxies
// application traffic (inbound, egress, gateway): without it Envoy answers an
// Upgrade: websocket request with 403.
func websocketUpgrades() []*hcmv3.HttpConnectionManager_UpgradeConfig {
	return []*hcmv3.HttpConnectionManager_UpgradeConfig{{UpgradeType: websocketUpgrade}}
}

// sharedRouter is the router filter every HTTP listener ends with, packed once.
// Listeners share it, so nothing may modify it.
var sharedRouter = sync.OnceValues(func() (*hcmv3.HttpFilter, error) {
	return httpFilter(routerFilterName, &routerv3.Router{})
})

// routerTypeURL identifies the router filter's config, whatever its name.
var routerTypeURL = "type.googleapis.com/" + string((&routerv3.Router{}).ProtoReflect().Descriptor().FullName())

// httpFilter packs a validated HTTP filter config under its name.
func httpFilter(name string, cfg validatable) (*hcmv3.HttpFilter, error) {
	packed, err := pack(cfg)
	if err != nil {
		return nil, fmt.Errorf("http filter %q: %w", name, err)
	}
	return &hcmv3.HttpFilter{Name: name, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: packed}}, nil
}

// tcpProxy forwards connections to cluster, logged with tel's TCP access log.
func tcpProxy(statPrefix, cluster string, tel *telemetry) (*listenerv3.Filter, error) {
	tp, err := pack(&tcpproxyv3.TcpProxy{
		StatPrefix:       statPrefix,
		ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: cluster},
		AccessLog:        tel.tcp(),
	})
	if err != nil {
		return nil, fmt.Errorf("tcp_proxy: %w", err)
	}
	return &listenerv3.Filter{Name: tcpProxyFilterName, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: tp}}, nil
}

// routeConfig is a route table with one virtual host that takes any Host header:
// each listener serves exactly one destination.
func routeConfig(name string, routes []*routev3.Route) *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{
		Name: name,
		VirtualHosts: []*routev3.VirtualHost{{
			Name:    name,
			Domains: []string{"*"},
			Routes:  routes,
		}},
	}
}

func matchAll() *routev3.RouteMatch {
	return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}
}

func routeTo(cluster string) *routev3.Route_Route {
	return &routev3.Route_Route{Route: &routev3.RouteAction{
		ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster},
	}}
}

func directResponse(status uint32, body string) *routev3.Route_DirectResponse {
	return &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{
		Status: status,
		Body:   &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: body}},
	}}
}

// isHashLB reports whether lb picks endpoints by a request hash, the only load
// balancers that read a route's hash_policy.
func isHashLB(lb v1alpha1.LoadBalancer) bool {
	return lb == v1alpha1.LoadBalancerRingHash || lb == v1alpha1.LoadBalancerMaglev
}
