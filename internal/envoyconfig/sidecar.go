package envoyconfig

import (
	"cmp"
	"fmt"
	"slices"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"

	"github.com/envoymesh/envoymesh-operator/api/v1alpha1"
)

// Where the sidecar finds its config and which ports it keeps for itself.
const (
	// MountPath is where the ConfigMap is mounted in the sidecar; the bootstrap
	// watches this directory, so a ConfigMap update is loaded without a restart.
	MountPath     = "/etc/envoy"
	BootstrapFile = "envoy.yaml"
	ListenersFile = "lds.yaml"
	ClustersFile  = "cds.yaml"
	AdminPort     = v1alpha1.EnvoyAdminPort
	StatusPort    = v1alpha1.EnvoyStatusPort

	// DefaultClusterDomain is used when Options.ClusterDomain is empty.
	DefaultClusterDomain = "cluster.local"

	// IdentityDir is where the kubelet writes the sidecar's Pod Certificate
	// (CredentialBundleFile: the private key, then the chain) and the mesh's
	// trust anchors (TrustBundleFile), and keeps them fresh.
	IdentityDir          = "/var/run/envoymesh/identity"
	CredentialBundleFile = "bundle.pem"
	TrustBundleFile      = "ca.pem"
)

// Service is everything one sidecar's config depends on, already resolved.
type Service struct {
	Name, Namespace   string
	Port, ServicePort int32
	Protocol          v1alpha1.Protocol
	Upstreams         []Upstream
	// Security, when set, gives the sidecar its identity: mutual TLS on the
	// inbound listener with authorization, and on the clusters of upstreams
	// that have a Peer. Nil keeps everything plaintext.
	Security *Security
	// Observability, resolved from the mesh, adds the access log and the
	// tracer (service name Name) to the inbound and egress listeners; the zero
	// value adds nothing.
	Observability Observability
}

// Upstream is one egress listener of the sidecar and, when resolved, its cluster.
type Upstream struct {
	Name, Namespace string // Namespace already defaulted to the caller's namespace
	LocalPort       int32
	Target          *Target // nil when the upstream MeshService does not exist
	// Invalid, when set, is why the builder must refuse this entry although it
	// passed the API server, which cannot see the callee: ServiceFor sets it for
	// HTTP-only traffic fields a caller sets for a TCP upstream.
	Invalid string
}

// Target is what the caller needs to know about an existing upstream MeshService.
type Target struct {
	ServicePort int32
	Protocol    v1alpha1.Protocol
	Traffic     v1alpha1.TrafficPolicy // already merged by MergeTraffic
	// Peer, when set, is the target's identity, and the caller reaches it over
	// mutual TLS; nil is plaintext (the target's mesh or the caller's has mTLS
	// Disabled). A Peer needs the caller's own identity, its Security.
	Peer *Peer
}

// Options are cluster-wide settings that are not part of any MeshService.
type Options struct {
	// ClusterDomain is the DNS suffix of Services, e.g. "cluster.local".
	ClusterDomain string
	// Delivery is where the bootstrap sends Envoy for its listeners and
	// clusters; nil means FileDelivery. For a mesh whose delivery is XDS, it
	// is ADSDelivery's, which also makes upstream clusters EDS clusters.
	Delivery *Delivery
	// Endpoints are the load assignments of EDS clusters by cluster name
	// (UpstreamClusterName of the upstream MeshService), as
	// ClusterLoadAssignment builds them; read only when Delivery has EDS.
	// A cluster without one gets an empty assignment, so it still warms and
	// fails fast rather than waiting for endpoints that never come. One map
	// may serve every build: each takes only its own clusters' entries, and
	// shares them without copying.
	Endpoints map[string]*endpointv3.ClusterLoadAssignment
}

func (o Options) withDefaults() Options {
	if o.ClusterDomain == "" {
		o.ClusterDomain = DefaultClusterDomain
	}
	if o.Delivery == nil {
		d := FileDelivery()
		o.Delivery = &d
	}
	return o
}

// Output is the content of the Envoy's ConfigMap, rendered from Resources, plus
// the versions the controller stamps on objects.
type Output struct {
	// Bootstrap, Listeners and Clusters are the contents of envoy.yaml,
	// lds.yaml and cds.yaml; Listeners and Clusters are nil under ADS, and
	// then the ConfigMap has no such files (see Render).
	Bootstrap, Listeners, Clusters []byte
	// SDSIdentity and SDSTrust are the contents of sds-identity.yaml and
	// sds-trust.yaml, the SDS files of the identity and trust secrets; empty
	// without Security (and without ADS), and then the ConfigMap has no such
	// files.
	SDSIdentity, SDSTrust []byte
	// ConfigVersion is Resources.Version, the version_info of lds.yaml and
	// cds.yaml, so a sidecar's loaded version tells whether it runs the
	// latest; empty when neither is written (ADS).
	ConfigVersion string
	// BootstrapHash is Resources.BootstrapVersion; the pod template carries it
	// so only a bootstrap change rolls the pods.
	BootstrapHash string
}

// BuildSidecar builds and validates the sidecar config of svc. The same inputs
// always give the same Resources and Version, whatever the order of svc.Upstreams.
func BuildSidecar(svc Service, opts Options) (*Resources, error) {
	if err := checkService(svc); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	if err := checkDelivery(opts.Delivery); err != nil {
		return nil, err
	}
	ups := slices.Clone(svc.Upstreams)
	slices.SortFunc(ups, func(a, b Upstream) int { return cmp.Compare(a.LocalPort, b.LocalPort) })

	boot, err := Bootstrap(svc.Name+"."+svc.Namespace, svc.Name, *opts.Delivery)
	if err != nil {
		return nil, err
	}

	tel, err := telemetryFor(svc.Observability, svc.Name)
	if err != nil {
		return nil, err
	}
	inbound, err := inboundListener(svc, tel)
	if err != nil {
		return nil, err
	}
	res := &Resources{Bootstrap: boot, BootstrapSecrets: opts.Delivery.Secrets, Listeners: []*listenerv3.Listener{inbound}}
	if res.Secrets, err = secretsFor(svc.Security); err != nil {
		return nil, err
	}
	local, err := localAppCluster(svc)
	if err != nil {
		return nil, err
	}
	res.Clusters = []*clusterv3.Cluster{local}
	for _, u := range ups {
		l, err := egressListener(u, tel)
		if err != nil {
			return nil, err
		}
		res.Listeners = append(res.Listeners, l)
		if u.Target == nil {
			continue
		}
		c, err := upstreamClusterVia(u, opts.ClusterDomain, opts.Delivery.EDS)
		if err != nil {
			return nil, err
		}
		res.Clusters = append(res.Clusters, c)
	}
	collector, err := collectorClusters(tel, svc.Observability, res.Listeners, opts.ClusterDomain)
	if err != nil {
		return nil, err
	}
	res.Clusters = append(res.Clusters, collector...)
	if opts.Delivery.EDS != nil {
		if res.Endpoints, err = endpointsFor(res.Clusters, opts.Endpoints); err != nil {
			return nil, err
		}
	}
	return res.versioned()
}

// checkService rejects what the API server cannot see but Envoy would refuse or
// misroute: two listeners on one port, a clash with the app or the reserved ports,
// and two upstream entries that name the same MeshService once namespaces are
// defaulted ({name: b} and {name: b, namespace: <own>} pass CEL, but their
// clusters would share a name and Envoy would reject the whole CDS update).
func checkService(svc Service) error {
	if svc.Name == "" || svc.Namespace == "" {
		return fmt.Errorf("service name and namespace must be set, got %q/%q", svc.Namespace, svc.Name)
	}
	if err := checkSecurity(svc.Security); err != nil {
		return err
	}
	if err := checkObservability(svc.Observability); err != nil {
		return err
	}
	// Each port is claimed by a field: -1 and -2 are the app's ports, -3 and -4
	// Envoy's, i ≥ 0 spec.upstreams[i]'s localPort. Names are only made for errors.
	const appPort, servicePort, adminPort, statusPort = -1, -2, -3, -4
	what := func(owner int) string {
		switch owner {
		case appPort:
			return "port"
		case servicePort:
			return "servicePort"
		case adminPort:
			return "the Envoy admin port"
		case statusPort:
			return "the Envoy status port"
		}
		u := svc.Upstreams[owner]
		return fmt.Sprintf("upstream %s/%s localPort", u.Namespace, u.Name)
	}
	used := make(map[int32]int, len(svc.Upstreams)+4)
	used[AdminPort], used[StatusPort] = adminPort, statusPort
	claim := func(port int32, owner int) error {
		if port < 1 || port > 65535 {
			return fmt.Errorf("%s %d is not a valid port", what(owner), port)
		}
		if other, ok := used[port]; ok {
			return fmt.Errorf("%s %d clashes with %s", what(owner), port, what(other))
		}
		used[port] = owner
		return nil
	}
	if err := claim(svc.Port, appPort); err != nil {
		return err
	}
	if err := claim(svc.ServicePort, servicePort); err != nil {
		return err
	}
	// Upstreams are in spec order, so their index names the field.
	clusters := make(map[string]int, len(svc.Upstreams))
	for i, u := range svc.Upstreams {
		if err := claim(u.LocalPort, i); err != nil {
			return err
		}
		name := UpstreamClusterName(u.Name, u.Namespace)
		if j, ok := clusters[name]; ok {
			return fmt.Errorf("spec.upstreams[%d] names MeshService %s/%s, as spec.upstreams[%d] does: name each upstream once", i, u.Namespace, u.Name, j)
		}
		clusters[name] = i
		if u.Target != nil && (u.Target.ServicePort < 1 || u.Target.ServicePort > 65535) {
			return fmt.Errorf("upstream %s/%s: servicePort %d is not a valid port", u.Namespace, u.Name, u.Target.ServicePort)
		}
		if u.Target != nil && u.Target.Peer != nil && svc.Security == nil {
			return fmt.Errorf("upstream %s/%s has a Peer, but the service has no identity (Security) to present to it", u.Namespace, u.Name)
		}
	}
	return nil
}

// isHTTP2 reports whether a protocol needs HTTP/2 towards the application.
func isHTTP2(p v1alpha1.Protocol) bool {
	return p == v1alpha1.ProtocolHTTP2 || p == v1alpha1.ProtocolGRPC
}
