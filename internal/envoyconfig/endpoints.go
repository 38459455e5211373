package envoyconfig

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// ClusterLoadAssignment is the EDS resource of an upstream cluster, built from
// the EndpointSlices of the upstream's headless Service. clusterName is the
// cluster's (UpstreamClusterName), port the upstream's servicePort.
//
//   - Health follows the slice's conditions as Kubernetes defines them (nil
//     ready and serving mean true, nil terminating false): an endpoint that is
//     ready, serving and not terminating is HEALTHY; every other one is
//     DRAINING, as issue 17 asks for terminating and not-serving endpoints
//     alike. Envoy sends no new requests to a DRAINING host but keeps it and
//     its connections, so a terminating pod finishes what it has (where DNS
//     drops it at once), and a pod that is starting or failing its readiness
//     probe keeps its health-check and outlier state. Envoy excludes DRAINING
//     hosts from the panic threshold, so two starting pods beside one ready
//     one do not throw the cluster into panic routing.
//   - Only IPv4 and IPv6 slices count (FQDN has no defined meaning), and of
//     each endpoint only its first address (none is defined for the others),
//     when it is an IP of the slice's family.
//   - The port is the slice's TCP port numbered port: the operator's headless
//     Service maps servicePort to the same target port, so that is the port
//     the pods' sidecars listen on. A slice without it adds nothing.
//   - An address in several slices (the EndpointSlice controller moves
//     endpoints between slices in two writes) is one endpoint, with the
//     healthiest state seen, then the smallest zone name.
//   - Endpoints are grouped by zone into one locality each ({zone: ...}; none
//     without a zone), localities sorted by zone and endpoints by address, so
//     the same endpoints give the same bytes in whatever order the slices and
//     their endpoints come.
//
// The result has no endpoints, but is valid, when nothing matches: the cluster
// then has no host and fails requests at once.
func ClusterLoadAssignment(clusterName string, port int32, endpointSlices []discoveryv1.EndpointSlice) *endpointv3.ClusterLoadAssignment {
	seen := map[netip.Addr]endpointState{}
	for i := range endpointSlices {
		s := &endpointSlices[i]
		if !hasPort(s, port) {
			continue
		}
		for j := range s.Endpoints {
			ep := &s.Endpoints[j]
			addr, ok := endpointAddress(s.AddressType, ep.Addresses)
			if !ok {
				continue
			}
			next := endpointState{health: endpointHealth(ep.Conditions)}
			if ep.Zone != nil {
				next.zone = *ep.Zone
			}
			if prev, ok := seen[addr]; !ok || next.better(prev) {
				seen[addr] = next
			}
		}
	}

	byZone := map[string][]netip.Addr{}
	for addr, st := range seen {
		byZone[st.zone] = append(byZone[st.zone], addr)
	}
	zones := make([]string, 0, len(byZone))
	for z := range byZone {
		zones = append(zones, z)
	}
	slices.Sort(zones)
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: clusterName}
	for _, z := range zones {
		addrs := byZone[z]
		slices.SortFunc(addrs, netip.Addr.Compare)
		lle := &endpointv3.LocalityLbEndpoints{LbEndpoints: make([]*endpointv3.LbEndpoint, 0, len(addrs))}
		if z != "" {
			lle.Locality = &corev3.Locality{Zone: z}
		}
		for _, a := range addrs {
			lle.LbEndpoints = append(lle.LbEndpoints, &endpointv3.LbEndpoint{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
					Address: socketAddress(a.String(), port),
				}},
				HealthStatus: seen[a].health,
			})
		}
		cla.Endpoints = append(cla.Endpoints, lle)
	}
	return cla
}

// endpointState is what an address is in one slice: merged across slices by
// endpointState.better.
type endpointState struct {
	health corev3.HealthStatus // HEALTHY or DRAINING
	zone   string
}

// better reports whether s wins over other for the same address: healthier,
// or as healthy in a smaller zone, so the winner does not depend on order.
func (s endpointState) better(other endpointState) bool {
	if s.health != other.health {
		return s.health == corev3.HealthStatus_HEALTHY
	}
	return s.zone < other.zone
}

// hasPort reports whether the slice exposes port over TCP (a nil protocol is TCP).
func hasPort(s *discoveryv1.EndpointSlice, port int32) bool {
	for _, p := range s.Ports {
		if p.Port != nil && *p.Port == port && (p.Protocol == nil || *p.Protocol == corev1.ProtocolTCP) {
			return true
		}
	}
	return false
}

// endpointAddress is the endpoint's first address when it is an IP of the
// slice's family, in canonical form; zoned IPv6 addresses are not routable
// pod IPs and are skipped.
func endpointAddress(family discoveryv1.AddressType, addresses []string) (netip.Addr, bool) {
	if len(addresses) == 0 {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(addresses[0])
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, false
	}
	switch family {
	case discoveryv1.AddressTypeIPv4:
		return a, a.Is4()
	case discoveryv1.AddressTypeIPv6:
		return a, a.Is6()
	}
	return netip.Addr{}, false
}

// endpointHealth is HEALTHY for an endpoint that is ready, serving and not
// terminating, DRAINING otherwise; see ClusterLoadAssignment.
func endpointHealth(c discoveryv1.EndpointConditions) corev3.HealthStatus {
	ready := c.Ready == nil || *c.Ready
	serving := c.Serving == nil || *c.Serving
	terminating := c.Terminating != nil && *c.Terminating
	if ready && serving && !terminating {
		return corev3.HealthStatus_HEALTHY
	}
	return corev3.HealthStatus_DRAINING
}

// EndpointClusters are the names of r's EDS clusters, in r's order: the keys
// of Options.Endpoints and WithEndpoints that r reads.
func (r *Resources) EndpointClusters() []string {
	var names []string
	for _, c := range r.Clusters {
		if c.GetType() == clusterv3.Cluster_EDS {
			names = append(names, edsName(c))
		}
	}
	return names
}

// WithEndpoints is r with its endpoints taken from byCluster (as
// Options.Endpoints) and EndpointsVersion recomputed, for an EndpointSlice
// change: nothing else is rebuilt, and everything else, Version included, is
// shared with r, which is left as it was. It costs the validation and the hash
// of the assignments, no listener or cluster.
func (r *Resources) WithEndpoints(byCluster map[string]*endpointv3.ClusterLoadAssignment) (*Resources, error) {
	out := *r
	var err error
	if out.Endpoints, err = endpointsFor(r.Clusters, byCluster); err != nil {
		return nil, err
	}
	if out.EndpointsVersion, err = endpointsVersion(out.Endpoints); err != nil {
		return nil, err
	}
	return &out, nil
}

// endpointsFor is the load assignment of each EDS cluster, from byCluster or
// empty, validated: go-control-plane's snapshot wants one for every EDS
// cluster, and so does Envoy, which otherwise waits for it before the cluster
// warms.
func endpointsFor(clusters []*clusterv3.Cluster, byCluster map[string]*endpointv3.ClusterLoadAssignment) ([]*endpointv3.ClusterLoadAssignment, error) {
	var out []*endpointv3.ClusterLoadAssignment
	for _, c := range clusters {
		if c.GetType() != clusterv3.Cluster_EDS {
			continue
		}
		name := edsName(c)
		cla := byCluster[name]
		if cla == nil {
			cla = &endpointv3.ClusterLoadAssignment{ClusterName: name}
		} else if cla.GetClusterName() != name {
			return nil, fmt.Errorf("endpoints for cluster %q are named %q", name, cla.GetClusterName())
		}
		if err := cla.ValidateAll(); err != nil {
			return nil, fmt.Errorf("endpoints of cluster %q: %w", name, err)
		}
		out = append(out, cla)
	}
	return out, nil
}

// edsName is the EDS resource an EDS cluster asks for: its service_name, or
// its own name without one.
func edsName(c *clusterv3.Cluster) string {
	return cmp.Or(c.GetEdsClusterConfig().GetServiceName(), c.GetName())
}
