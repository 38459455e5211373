package envoyconfig

import (
	"cmp"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"k8s.io/apimachinery/pkg/types"

	"github.com/envoymesh/envoymesh-operator/api/v1alpha1"
)

// GatewayListenPort is the container port the gateway Envoy listens on. Envoy runs
// as non-root under the restricted Pod Security Standard and cannot bind port 80,
// so the gateway Service maps spec.gateway.port to this port.
const GatewayListenPort = 8080

const gatewayListenerName = "gateway"

// Gateway is everything a mesh's gateway (the seed's front Envoy) depends on,
// already resolved.
type Gateway struct {
	Name, Namespace string // the ServiceMesh
	ListenPort      int32  // the container port Envoy listens on; GatewayFor sets GatewayListenPort
	Routes          []GatewayRoute
	// Security, when set, gives the gateway its identity, which it presents to
	// the route targets that have a Peer. Only whether it is set matters: the
	// gateway's listener takes plaintext HTTP from outside the mesh, so its
	// modes and principals are not read.
	Security *Security
	// Observability, resolved from the mesh, adds the access log and the
	// tracer (service name "<Name>-gateway") to the listener; the zero value
	// adds nothing.
	Observability Observability
}

// GatewayRoute is one resolved route of the gateway.
type GatewayRoute struct {
	Prefix string
	// Host, when set, is the Host header the route serves (exact, or "*."
	// wildcard, optional ":port"); routes without one serve any other host.
	Host            string
	Name, Namespace string  // the target MeshService, Namespace already defaulted to the mesh's
	Target          *Target // nil when the MeshService does not exist: the route answers 503; its Peer makes the cluster mTLS
	// NotAllowed is set when the target, in another namespace, does not consent
	// to this gateway: the route answers 403 with this reason, in every mTLS mode.
	NotAllowed string
}

// GatewayFor resolves a ServiceMesh into a Gateway: route namespaces default to the
// mesh's, each Target comes from the MeshServices the caller found (a missing or
// nil entry leaves Target nil), and traffic merges the target's spec.traffic over
// the mesh's defaults. The mesh's access log and tracing become Observability
// (see ObservabilityFor).
func GatewayFor(mesh *v1alpha1.ServiceMesh, found map[types.NamespacedName]*v1alpha1.MeshService) Gateway {
	gw := Gateway{Name: mesh.Name, Namespace: mesh.Namespace, ListenPort: GatewayListenPort, Observability: ObservabilityFor(mesh)}
	if mesh.Spec.Gateway == nil {
		return gw
	}
	for _, r := range mesh.Spec.Gateway.Routes {
		route := GatewayRoute{Prefix: r.Prefix, Host: r.Host, Name: r.Service, Namespace: r.Namespace}
		if route.Namespace == "" {
			route.Namespace = mesh.Namespace
		}
		if ms := found[types.NamespacedName{Namespace: route.Namespace, Name: route.Name}]; ms != nil {
			route.Target = &Target{
				ServicePort: ms.Spec.ServicePort,
				Protocol:    ms.Spec.Protocol,
				Traffic:     MergeTraffic(ms.Spec.Traffic, mesh.Spec.Defaults),
			}
		}
		gw.Routes = append(gw.Routes, route)
	}
	return gw
}

// BuildGateway builds and validates the gateway's config: the same bootstrap as a
// sidecar's, one listener on 0.0.0.0:ListenPort that routes by host (a virtual
// host per distinct route host, and "*" for routes without one) and then by
// path prefix, whole segments, longest first, and one cluster per target
// MeshService. The same inputs always give the same Resources and Version,
// whatever the order of gw.Routes.
func BuildGateway(gw Gateway, opts Options) (*Resources, error) {
	if err := checkGateway(gw); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	if err := checkDelivery(opts.Delivery); err != nil {
		return nil, err
	}
	routes := slices.Clone(gw.Routes)
	slices.SortFunc(routes, func(a, b GatewayRoute) int {
		return cmp.Or(strings.Compare(a.Host, b.Host), cmp.Compare(len(b.Prefix), len(a.Prefix)), strings.Compare(a.Prefix, b.Prefix))
	})

	name := gw.Name + "-gateway"
	boot, err := Bootstrap(name+"."+gw.Namespace, name, *opts.Delivery)
	if err != nil {
		return nil, err
	}

	byHost := map[string][]*routev3.Route{}
	hasRoot := map[string]bool{}
	clusters := map[string]*clusterv3.Cluster{}
	for _, r := range routes {
		route, c, err := gatewayRoute(r, opts.ClusterDomain, opts.Delivery.EDS)
		if err != nil {
			return nil, fmt.Errorf("gateway route %s: %w", r.label(), err)
		}
		byHost[r.Host] = append(byHost[r.Host], route)
		hasRoot[r.Host] = hasRoot[r.Host] || r.Prefix == "/"
		if c == nil {
			continue
		}
		// Routes to one MeshService share its cluster, so they must agree on it.
		if prev, ok := clusters[c.Name]; ok && !proto.Equal(prev, c) {
			return nil, fmt.Errorf("gateway route %s: MeshService %s/%s has a different target on another route", r.label(), r.Namespace, r.Name)
		}
		clusters[c.Name] = c
	}
	// Named hosts in order, then "*" (always there, so any host gets an answer).
	// Envoy picks the virtual host by domain specificity, not by this order.
	var vhosts []*routev3.VirtualHost
	for _, host := range append(slices.DeleteFunc(slices.Sorted(maps.Keys(byHost)), func(h string) bool { return h == "" }), "") {
		vh := &routev3.VirtualHost{Name: gatewayListenerName, Domains: []string{"*"}, Routes: byHost[host]}
		if host != "" {
			vh.Name, vh.Domains = gatewayListenerName+"_"+host, []string{host}
		}
		// Without a "/" route, a request that matches no prefix gets a 404 that
		// says why, rather than Envoy's empty one.
		if !hasRoot[host] {
			vh.Routes = append(vh.Routes, &routev3.Route{
				Match:  matchAll(),
				Action: directResponse(404, "envoymesh: no gateway route matches this path\n"),
			})
		}
		vhosts = append(vhosts, vh)
	}

	tel, err := telemetryFor(gw.Observability, name)
	if err != nil {
		return nil, err
	}
	rc := &routev3.RouteConfiguration{Name: gatewayListenerName, VirtualHosts: vhosts}
	listener, err := gatewayListener(gw.ListenPort, rc, tel)
	if err != nil {
		return nil, err
	}
	// Sorted by name, so a route change that keeps the targets leaves cds.yaml alone.
	sorted := slices.SortedFunc(maps.Values(clusters), func(a, b *clusterv3.Cluster) int { return strings.Compare(a.Name, b.Name) })
	collector, err := collectorClusters(tel, gw.Observability, []*listenerv3.Listener{listener}, opts.ClusterDomain)
	if err != nil {
		return nil, err
	}
	res := &Resources{Bootstrap: boot, BootstrapSecrets: opts.Delivery.Secrets, Listeners: []*listenerv3.Listener{listener}, Clusters: append(sorted, collector...)}
	if res.Secrets, err = secretsFor(gw.Security); err != nil {
		return nil, err
	}
	if opts.Delivery.EDS != nil {
		if res.Endpoints, err = endpointsFor(res.Clusters, opts.Endpoints); err != nil {
			return nil, err
		}
	}
	return res.versioned()
}

// label names a route in errors: its prefix, and its host when it has one.
func (r GatewayRoute) label() string {
	if r.Host == "" {
		return fmt.Sprintf("%q", r.Prefix)
	}
	return fmt.Sprintf("%q (host %q)", r.Prefix, r.Host)
}

// gatewayHostPattern is what a route's host may be: the CRD's CEL rule on
// spec.gateway.routes[].host, an Envoy virtual host domain that is exact or a
// leading "*." wildcard, with an optional port.
var gatewayHostPattern = regexp.MustCompile(`^([*][.])?[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*(:[0-9]{1,5})?$`)

// checkGateway rejects what Envoy would refuse or misroute: a listen port that is
// invalid or reserved, a prefix that is empty, relative, holds a query or
// fragment, or is repeated within a host (the second copy could never match, and
// route order would depend on input order), and a host that is no domain.
func checkGateway(gw Gateway) error {
	if gw.Name == "" || gw.Namespace == "" {
		return fmt.Errorf("gateway name and namespace must be set, got %q/%q", gw.Namespace, gw.Name)
	}
	if gw.ListenPort < 1 || gw.ListenPort > 65535 {
		return fmt.Errorf("gateway listen port %d is not a valid port", gw.ListenPort)
	}
	if gw.ListenPort == AdminPort || gw.ListenPort == StatusPort {
		return fmt.Errorf("gateway listen port %d is reserved for Envoy", gw.ListenPort)
	}
	if err := checkObservability(gw.Observability); err != nil {
		return err
	}
	type key struct{ host, prefix string }
	seen := map[key]bool{}
	for _, r := range gw.Routes {
		if !strings.HasPrefix(r.Prefix, "/") {
			return fmt.Errorf("gateway route prefix %q must start with /", r.Prefix)
		}
		if strings.ContainsAny(r.Prefix, "?#") {
			return fmt.Errorf("gateway route prefix %q must not contain ? or #", r.Prefix)
		}
		if r.Host != "" && !gatewayHostPattern.MatchString(r.Host) {
			return fmt.Errorf("gateway route %s: host must be a lowercase host name or *. wildcard, optionally with :port", r.label())
		}
		if seen[key{r.Host, r.Prefix}] {
			return fmt.Errorf("gateway route prefix %s is listed twice", r.label())
		}
		seen[key{r.Host, r.Prefix}] = true
		if r.Name == "" || r.Namespace == "" {
			return fmt.Errorf("gateway route %q: service name and namespace must be set, got %q/%q", r.Prefix, r.Namespace, r.Name)
		}
		if r.NotAllowed != "" && r.Target != nil {
			return fmt.Errorf("gateway route %q: MeshService %s/%s is not allowed and has a target", r.Prefix, r.Namespace, r.Name)
		}
		if t := r.Target; t != nil {
			if t.ServicePort < 1 || t.ServicePort > 65535 {
				return fmt.Errorf("gateway route %q: MeshService %s/%s servicePort %d is not a valid port", r.Prefix, r.Namespace, r.Name, t.ServicePort)
			}
			if t.Protocol == v1alpha1.ProtocolTCP {
				return fmt.Errorf("gateway route %q: MeshService %s/%s speaks TCP, but a gateway route is HTTP; route only to HTTP, HTTP2 or GRPC services", r.Prefix, r.Namespace, r.Name)
			}
			if t.Peer != nil && gw.Security == nil {
				return fmt.Errorf("gateway route %q: MeshService %s/%s has a Peer, but the gateway has no identity (Security) to present to it", r.Prefix, r.Namespace, r.Name)
			}
		}
	}
	return nil
}

// gatewayMatch matches prefix by whole path segments: Envoy's
// path_separated_prefix, so /api matches /api and /api/x but not /apiv2. Envoy
// requires that prefix not end in "/"; a prefix that does ("/", "/api/")
// already ends at a segment boundary and stays a plain prefix.
func gatewayMatch(prefix string) *routev3.RouteMatch {
	if strings.HasSuffix(prefix, "/") {
		return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: prefix}}
	}
	return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: prefix}}
}

// gatewayRoute is the route of r and, when its target exists, the target's
// cluster: the same cluster a sidecar uses to call that MeshService, STRICT_DNS
// or, with eds, EDS.
func gatewayRoute(r GatewayRoute, clusterDomain string, eds *corev3.ConfigSource) (*routev3.Route, *clusterv3.Cluster, error) {
	match := gatewayMatch(r.Prefix)
	if r.NotAllowed != "" {
		body := fmt.Sprintf("envoymesh: %s\n", r.NotAllowed)
		return &routev3.Route{Match: match, Action: directResponse(403, body)}, nil, nil
	}
	if r.Target == nil {
		body := fmt.Sprintf("envoymesh: MeshService %q in namespace %q does not exist\n", r.Name, r.Namespace)
		return &routev3.Route{Match: match, Action: directResponse(503, body)}, nil, nil
	}
	route, err := trafficRoute(match, UpstreamClusterName(r.Name, r.Namespace), r.Target.Protocol, r.Target.Traffic)
	if err != nil {
		return nil, nil, err
	}
	c, err := upstreamClusterVia(Upstream{Name: r.Name, Namespace: r.Namespace, Target: r.Target}, clusterDomain, eds)
	if err != nil {
		return nil, nil, err
	}
	return route, c, nil
}

// gatewayListener is the edge listener. As an edge proxy it trusts only the
// connection's peer address for the client (use_remote_address) and generates
// x-request-id, as the seed's front Envoy does, so requests can be traced
// through the sidecars: an id a client sends is replaced (preserve_external_request_id
// stays false), so ids in the mesh's logs are the gateway's. It normalises
// paths before routing (RFC 3986 dot segments, and repeated slashes merged),
// so /a/../admin or //admin cannot slip past a prefix. tel adds the access log
// and the tracer; the gateway's spans are server spans.
func gatewayListener(port int32, rc *routev3.RouteConfiguration, tel *telemetry) (*listenerv3.Listener, error) {
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix:        gatewayListenerName,
		RouteSpecifier:    &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: rc},
		GenerateRequestId: wrapperspb.Bool(true),
		UseRemoteAddress:  wrapperspb.Bool(true),
		NormalizePath:     wrapperspb.Bool(true),
		MergeSlashes:      true,
		UpgradeConfigs:    websocketUpgrades(),
	}
	tel.http(hcm)
	filter, err := httpConnectionManagerFilter(hcm)
	if err != nil {
		return nil, fmt.Errorf("listener %q: %w", gatewayListenerName, err)
	}
	return validListener(tel.direction(&listenerv3.Listener{
		Name:         gatewayListenerName,
		Address:      socketAddress(anyAddress, port),
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{filter}}},
	}, corev3.TrafficDirection_INBOUND))
}
