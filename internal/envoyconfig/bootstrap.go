package envoyconfig

import (
	"fmt"
	"sync"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Names of the bootstrap's static resources.
const (
	statusListenerName = "status"
	adminClusterName   = "envoy_admin"
)

// statusPaths are the admin endpoints the status listener exposes, read-only, to the
// kubelet's probes and the operator's prober; /certs tells the prober which
// certificate the sidecar serves and when it expires, and /stats/prometheus is
// what Prometheus scrapes. Everything else on the admin
// API (quitquitquit, config_dump, logging, runtime_modify, ...) stays on loopback.
var statusPaths = []string{"/ready", "/server_info", "/stats", "/stats/prometheus", "/clusters", "/certs"}

// staticConnectTimeout is the connect timeout of clusters on loopback, as in the seed.
const staticConnectTimeout = 250 * time.Millisecond

// Delivery is how an Envoy receives its listeners and clusters: the config
// sources of the bootstrap's dynamic_resources, plus the static clusters those
// sources need (an ADS server's, for instance).
type Delivery struct {
	LDS, CDS *corev3.ConfigSource
	// ADS, when set, is the aggregated source that LDS, CDS and EDS may name.
	ADS *corev3.ApiConfigSource
	// EDS, when set, is where upstream clusters (a sidecar's upstreams, a
	// gateway's route targets) find their endpoints: they are EDS clusters
	// instead of STRICT_DNS over the headless Service, and the build fills
	// Resources.Endpoints for them from Options.Endpoints. Nil keeps DNS.
	EDS *corev3.ConfigSource
	// Clusters are added to the bootstrap's static clusters.
	Clusters []*clusterv3.Cluster
	// Secrets are the SDS secrets Clusters name. They reach Envoy as files
	// beside the bootstrap (Resources.BootstrapSecrets), never over xDS: a
	// static cluster's secrets cannot come from the server it connects to.
	Secrets []*tlsv3.Secret
}

// FileDelivery points Envoy at lds.yaml and cds.yaml under MountPath, mounted
// from the ConfigMap, and watches the directory: a ConfigMap update is loaded
// without a restart.
func FileDelivery() Delivery {
	return Delivery{LDS: watchedFile(ListenersFile), CDS: watchedFile(ClustersFile)}
}

// Bootstrap is the static part of an Envoy's config: its identity, the loopback-only
// admin API, the status listener, and where its listeners and clusters come from.
// It does not depend on listeners or clusters, so they change without a restart; a
// gateway Envoy reuses it with its own identity.
func Bootstrap(nodeID, nodeCluster string, d Delivery) (*bootstrapv3.Bootstrap, error) {
	status, err := sharedStatusListener()
	if err != nil {
		return nil, err
	}
	b := &bootstrapv3.Bootstrap{
		Node:  &corev3.Node{Id: nodeID, Cluster: nodeCluster},
		Admin: &bootstrapv3.Admin{Address: socketAddress(loopbackAddress, AdminPort)},
		DynamicResources: &bootstrapv3.Bootstrap_DynamicResources{
			LdsConfig: d.LDS,
			CdsConfig: d.CDS,
			AdsConfig: d.ADS,
		},
		StaticResources: &bootstrapv3.Bootstrap_StaticResources{
			Listeners: []*listenerv3.Listener{status},
			Clusters:  append([]*clusterv3.Cluster{adminCluster()}, d.Clusters...),
		},
	}
	if err := b.ValidateAll(); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	return b, nil
}

// watchedFile points Envoy at a file under MountPath and watches the directory,
// because a ConfigMap volume updates by swapping a symlink, which a watch on the
// file itself would miss.
func watchedFile(name string) *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion: corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_PathConfigSource{PathConfigSource: &corev3.PathConfigSource{
			Path:             MountPath + "/" + name,
			WatchedDirectory: &corev3.WatchedDirectory{Path: MountPath},
		}},
	}
}

// sharedStatusListener is statusListener, built once: it is the same in every
// bootstrap, and building it is most of a bootstrap's cost. Bootstraps share it,
// so nothing may modify it.
var sharedStatusListener = sync.OnceValues(statusListener)

// statusListener serves GET on the exact statusPaths from the admin API and 404 on
// everything else. Exact path matching ignores the query string, so the prober's
// filtered /stats?filter=... still matches.
func statusListener() (*listenerv3.Listener, error) {
	getOnly := []*routev3.HeaderMatcher{{
		Name: ":method",
		HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
			MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "GET"},
		}},
	}}
	var routes []*routev3.Route
	for _, p := range statusPaths {
		routes = append(routes, &routev3.Route{
			Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: p}, Headers: getOnly},
			Action: routeTo(adminClusterName),
		})
	}
	routes = append(routes, &routev3.Route{
		Match:  matchAll(),
		Action: directResponse(404, "envoymesh: not found; the status port serves only GET /ready, /server_info, /stats, /stats/prometheus, /clusters and /certs\n"),
	})
	// Not httpConnectionManager: the status port proxies no application
	// traffic, so it takes no WebSocket upgrades.
	hcm, err := httpConnectionManagerFilter(&hcmv3.HttpConnectionManager{
		StatPrefix:     statusListenerName,
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: routeConfig(statusListenerName, routes)},
	})
	if err != nil {
		return nil, fmt.Errorf("listener %q: %w", statusListenerName, err)
	}
	return &listenerv3.Listener{
		Name:         statusListenerName,
		Address:      socketAddress(anyAddress, StatusPort),
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{hcm}}},
	}, nil
}

func adminCluster() *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 adminClusterName,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout:       durationpb.New(staticConnectTimeout),
		LoadAssignment:       singleEndpoint(adminClusterName, loopbackAddress, AdminPort),
	}
}
