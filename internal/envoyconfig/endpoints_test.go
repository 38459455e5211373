package envoyconfig

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/utils/ptr"
)

const (
	edsCluster = "out.b.ns"
	edsPort    = 15006
)

// Endpoint conditions as the EndpointSlice controller writes them.
var (
	condReady       = discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)}
	condStarting    = discoveryv1.EndpointConditions{Ready: ptr.To(false), Serving: ptr.To(false), Terminating: ptr.To(false)}
	condTerminating = discoveryv1.EndpointConditions{Ready: ptr.To(false), Serving: ptr.To(true), Terminating: ptr.To(true)}
	condGone        = discoveryv1.EndpointConditions{Ready: ptr.To(false), Serving: ptr.To(false), Terminating: ptr.To(true)}
)

func slice(family discoveryv1.AddressType, eps ...discoveryv1.Endpoint) discoveryv1.EndpointSlice {
	return discoveryv1.EndpointSlice{
		AddressType: family,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](edsPort), Protocol: ptr.To(corev1.ProtocolTCP)}},
		Endpoints:   eps,
	}
}

func v4(eps ...discoveryv1.Endpoint) discoveryv1.EndpointSlice {
	return slice(discoveryv1.AddressTypeIPv4, eps...)
}

func ep(addr string, c discoveryv1.EndpointConditions, zone string) discoveryv1.Endpoint {
	e := discoveryv1.Endpoint{Addresses: []string{addr}, Conditions: c}
	if zone != "" {
		e.Zone = ptr.To(zone)
	}
	return e
}

// hostsOf flattens an assignment to "zone/address:port HEALTH", in its order.
func hostsOf(cla *endpointv3.ClusterLoadAssignment) []string {
	var out []string
	for _, l := range cla.GetEndpoints() {
		for _, e := range l.GetLbEndpoints() {
			sa := e.GetEndpoint().GetAddress().GetSocketAddress()
			out = append(out, fmt.Sprintf("%s/%s:%d %s", l.GetLocality().GetZone(), sa.GetAddress(), sa.GetPortValue(), e.GetHealthStatus()))
		}
	}
	return out
}

func TestClusterLoadAssignment(t *testing.T) {
	tests := []struct {
		name   string
		slices []discoveryv1.EndpointSlice
		want   []string
	}{
		{"ready endpoints serve", []discoveryv1.EndpointSlice{v4(ep("10.0.0.2", condReady, ""), ep("10.0.0.1", condReady, ""))},
			[]string{"/10.0.0.1:15006 HEALTHY", "/10.0.0.2:15006 HEALTHY"}},
		{"nil conditions are ready", []discoveryv1.EndpointSlice{v4(ep("10.0.0.1", discoveryv1.EndpointConditions{}, ""))},
			[]string{"/10.0.0.1:15006 HEALTHY"}},
		{"terminating but serving drains", []discoveryv1.EndpointSlice{v4(ep("10.0.0.1", condTerminating, ""), ep("10.0.0.2", condReady, ""))},
			[]string{"/10.0.0.1:15006 DRAINING", "/10.0.0.2:15006 HEALTHY"}},
		{"terminating and not serving drains", []discoveryv1.EndpointSlice{v4(ep("10.0.0.1", condGone, ""))},
			[]string{"/10.0.0.1:15006 DRAINING"}},
		{"not serving (starting) drains", []discoveryv1.EndpointSlice{v4(ep("10.0.0.1", condStarting, ""))},
			[]string{"/10.0.0.1:15006 DRAINING"}},
		// publishNotReadyAddresses: ready is forced true, serving tells the truth.
		{"ready but not serving drains", []discoveryv1.EndpointSlice{v4(ep("10.0.0.1", discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(false)}, ""))},
			[]string{"/10.0.0.1:15006 DRAINING"}},
		{"ready but terminating drains", []discoveryv1.EndpointSlice{v4(ep("10.0.0.1", discoveryv1.EndpointConditions{Ready: ptr.To(true), Terminating: ptr.To(true)}, ""))},
			[]string{"/10.0.0.1:15006 DRAINING"}},
		{"zones become sorted localities, the zoneless first",
			[]discoveryv1.EndpointSlice{v4(ep("10.0.0.1", condReady, "zone-b"), ep("10.0.0.2", condReady, "zone-a"), ep("10.0.0.3", condReady, ""), ep("10.0.0.4", condReady, "zone-b"))},
			[]string{"/10.0.0.3:15006 HEALTHY", "zone-a/10.0.0.2:15006 HEALTHY", "zone-b/10.0.0.1:15006 HEALTHY", "zone-b/10.0.0.4:15006 HEALTHY"}},
		{"an address in two slices is one endpoint, the healthiest",
			[]discoveryv1.EndpointSlice{v4(ep("10.0.0.1", condTerminating, "zone-a")), v4(ep("10.0.0.1", condReady, "zone-b"), ep("10.0.0.2", condReady, "zone-a"))},
			[]string{"zone-a/10.0.0.2:15006 HEALTHY", "zone-b/10.0.0.1:15006 HEALTHY"}},
		{"as healthy in two slices: the smaller zone",
			[]discoveryv1.EndpointSlice{v4(ep("10.0.0.1", condReady, "zone-b")), v4(ep("10.0.0.1", condReady, "zone-a"))},
			[]string{"zone-a/10.0.0.1:15006 HEALTHY"}},
		{"addresses are compared canonically",
			[]discoveryv1.EndpointSlice{slice(discoveryv1.AddressTypeIPv6, ep("fd00:0::1", condReady, "")), slice(discoveryv1.AddressTypeIPv6, ep("fd00::1", condReady, ""))},
			[]string{"/fd00::1:15006 HEALTHY"}},
		{"IPv4 and IPv6 slices both count, IPv4 first",
			[]discoveryv1.EndpointSlice{slice(discoveryv1.AddressTypeIPv6, ep("fd00::1", condReady, "")), v4(ep("10.0.0.1", condReady, ""))},
			[]string{"/10.0.0.1:15006 HEALTHY", "/fd00::1:15006 HEALTHY"}},
		{"FQDN slices are ignored", []discoveryv1.EndpointSlice{slice(discoveryv1.AddressTypeFQDN, ep("b.example.com", condReady, ""))}, nil},
		{"addresses that are no IP of the slice's family are ignored",
			[]discoveryv1.EndpointSlice{v4(ep("fd00::1", condReady, ""), ep("not-an-ip", condReady, ""), ep("fe80::1%eth0", condReady, "")), slice(discoveryv1.AddressTypeIPv6, ep("10.0.0.9", condReady, ""))},
			nil},
		{"only the first address counts",
			[]discoveryv1.EndpointSlice{v4(discoveryv1.Endpoint{Addresses: []string{"10.0.0.1", "10.0.0.2"}, Conditions: condReady}, discoveryv1.Endpoint{Conditions: condReady})},
			[]string{"/10.0.0.1:15006 HEALTHY"}},
		{"no slices", nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cla := ClusterLoadAssignment(edsCluster, edsPort, tc.slices)
			if err := cla.ValidateAll(); err != nil {
				t.Fatal(err)
			}
			if cla.ClusterName != edsCluster {
				t.Errorf("cluster_name %q, want %q", cla.ClusterName, edsCluster)
			}
			if diff := cmp.Diff(tc.want, hostsOf(cla)); diff != "" {
				t.Errorf("endpoints (-want +got):\n%s", diff)
			}
		})
	}
}

// TestClusterLoadAssignmentPort: only the slice's TCP port numbered like the
// Service's counts; a slice without it contributes nothing.
func TestClusterLoadAssignmentPort(t *testing.T) {
	match := v4(ep("10.0.0.1", condReady, ""))
	other := v4(ep("10.0.0.2", condReady, ""))
	other.Ports = []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080)}}
	udp := v4(ep("10.0.0.3", condReady, ""))
	udp.Ports = []discoveryv1.EndpointPort{{Port: ptr.To[int32](edsPort), Protocol: ptr.To(corev1.ProtocolUDP)}}
	none := v4(ep("10.0.0.4", condReady, ""))
	none.Ports = nil
	unset := v4(ep("10.0.0.5", condReady, ""))
	unset.Ports = []discoveryv1.EndpointPort{{Name: ptr.To("http")}}
	several := v4(ep("10.0.0.6", condReady, ""))
	several.Ports = []discoveryv1.EndpointPort{{Name: ptr.To("metrics"), Port: ptr.To[int32](9090)}, {Name: ptr.To("http"), Port: ptr.To[int32](edsPort)}}

	cla := ClusterLoadAssignment(edsCluster, edsPort, []discoveryv1.EndpointSlice{match, other, udp, none, unset, several})
	if diff := cmp.Diff([]string{"/10.0.0.1:15006 HEALTHY", "/10.0.0.6:15006 HEALTHY"}, hostsOf(cla)); diff != "" {
		t.Errorf("endpoints (-want +got):\n%s", diff)
	}
	if got := ClusterLoadAssignment(edsCluster, edsPort, []discoveryv1.EndpointSlice{other, udp}); len(got.Endpoints) != 0 || got.ValidateAll() != nil {
		t.Errorf("no port matches: got %v, want a valid assignment without endpoints", got)
	}
}

// TestClusterLoadAssignmentOrderIndependent: slices come from a cache in no
// particular order, and an endpoint may sit in two of them; the assignment's
// bytes must not depend on it, or every caller would be pushed for nothing.
func TestClusterLoadAssignmentOrderIndependent(t *testing.T) {
	conds := []discoveryv1.EndpointConditions{condReady, condStarting, condTerminating, condGone, {}}
	var input []discoveryv1.EndpointSlice
	for s := range 5 {
		var eps []discoveryv1.Endpoint
		for i := range 20 {
			// Addresses repeat across slices with other states and zones.
			addr := fmt.Sprintf("10.0.%d.%d", i%3, (s*7+i)%25)
			eps = append(eps, ep(addr, conds[(s+i)%len(conds)], []string{"", "zone-a", "zone-b"}[(s*i)%3]))
		}
		input = append(input, v4(eps...))
	}
	input = append(input, slice(discoveryv1.AddressTypeIPv6, ep("fd00::2", condReady, "zone-a"), ep("fd00::1", condGone, "")))
	want, err := deterministic.Marshal(ClusterLoadAssignment(edsCluster, edsPort, input))
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 50 {
		shuffled := make([]discoveryv1.EndpointSlice, len(input))
		for i, s := range input {
			s.Endpoints = slices.Clone(s.Endpoints)
			r.Shuffle(len(s.Endpoints), func(i, j int) { s.Endpoints[i], s.Endpoints[j] = s.Endpoints[j], s.Endpoints[i] })
			shuffled[i] = s
		}
		r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		got, err := deterministic.Marshal(ClusterLoadAssignment(edsCluster, edsPort, shuffled))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Fatal("another order of the same slices gave another assignment")
		}
	}
}

// TestEndpointsOfABuild: with EDS, each EDS cluster gets exactly one
// assignment, from Options.Endpoints or empty; WithEndpoints swaps them
// without touching anything else.
func TestEndpointsOfABuild(t *testing.T) {
	d := testADSDelivery(t)
	svc := meshCaller()
	b := ClusterLoadAssignment(UpstreamClusterName("web", "shop"), 15006, []discoveryv1.EndpointSlice{v4(ep("10.0.0.1", condReady, "zone-a"))})
	res, err := BuildSidecar(svc, Options{Delivery: &d, Endpoints: map[string]*endpointv3.ClusterLoadAssignment{
		b.ClusterName:        b,
		"out.unrelated.shop": {ClusterName: "out.unrelated.shop"}, // another sidecar's: not taken
	}})
	if err != nil {
		t.Fatal(err)
	}
	wantClusters := []string{"out.web.shop", "out.api.shop", "out.payments.shop", "out.cache.shop", "out.legacy.shop"}
	if got := res.EndpointClusters(); !slices.Equal(got, wantClusters) {
		t.Fatalf("EDS clusters %v, want %v", got, wantClusters)
	}
	var names []string
	for _, cla := range res.Endpoints {
		names = append(names, cla.ClusterName)
		if err := cla.ValidateAll(); err != nil {
			t.Error(err)
		}
	}
	if !slices.Equal(names, wantClusters) {
		t.Fatalf("endpoints for %v, want one per EDS cluster %v", names, wantClusters)
	}
	if res.Endpoints[0] != b || len(res.Endpoints[1].Endpoints) != 0 {
		t.Error("want the given assignment shared as is, and an empty one for a cluster without")
	}
	if res.EndpointsVersion == "" {
		t.Error("no EndpointsVersion")
	}

	t.Run("WithEndpoints", func(t *testing.T) {
		before := proto.Clone(res.Bootstrap)
		version, endpointsVersion, first := res.Version, res.EndpointsVersion, res.Endpoints[0]
		moved := ClusterLoadAssignment(b.ClusterName, 15006, []discoveryv1.EndpointSlice{v4(ep("10.0.0.1", condTerminating, "zone-a"), ep("10.0.0.2", condReady, "zone-a"))})
		next, err := res.WithEndpoints(map[string]*endpointv3.ClusterLoadAssignment{b.ClusterName: moved})
		if err != nil {
			t.Fatal(err)
		}
		if next.Endpoints[0] != moved || next.EndpointsVersion == endpointsVersion {
			t.Error("the new endpoints or their version are missing")
		}
		if next.Version != version || next.BootstrapVersion != res.BootstrapVersion || next.FilesVersion != res.FilesVersion {
			t.Error("an endpoint change moved another version")
		}
		if &next.Clusters[0] != &res.Clusters[0] || next.Bootstrap != res.Bootstrap {
			t.Error("listeners, clusters and bootstrap must be shared, not rebuilt")
		}
		if res.Endpoints[0] != first || res.EndpointsVersion != endpointsVersion || !proto.Equal(before, res.Bootstrap) {
			t.Error("WithEndpoints modified its receiver")
		}
		// The same endpoints built afresh have the same version.
		fresh, err := BuildSidecar(svc, Options{Delivery: &d, Endpoints: map[string]*endpointv3.ClusterLoadAssignment{b.ClusterName: moved}})
		if err != nil {
			t.Fatal(err)
		}
		if fresh.EndpointsVersion != next.EndpointsVersion {
			t.Error("WithEndpoints and a full build disagree on EndpointsVersion")
		}
		back, err := next.WithEndpoints(map[string]*endpointv3.ClusterLoadAssignment{b.ClusterName: b})
		if err != nil {
			t.Fatal(err)
		}
		if back.EndpointsVersion != endpointsVersion {
			t.Error("the same endpoints gave another version")
		}
	})

	t.Run("an assignment under another cluster's name is refused", func(t *testing.T) {
		_, err := res.WithEndpoints(map[string]*endpointv3.ClusterLoadAssignment{"out.web.shop": {ClusterName: "out.api.shop"}})
		if err == nil || !strings.Contains(err.Error(), `"out.web.shop"`) {
			t.Errorf("error %v, want the mismatch named", err)
		}
	})

	t.Run("file delivery takes no endpoints", func(t *testing.T) {
		files, err := BuildSidecar(svc, Options{Endpoints: map[string]*endpointv3.ClusterLoadAssignment{b.ClusterName: b}})
		if err != nil {
			t.Fatal(err)
		}
		plain, err := BuildSidecar(svc, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if len(files.Endpoints) != 0 || files.EndpointsVersion != "" || len(files.EndpointClusters()) != 0 || files.Version != plain.Version {
			t.Error("Options.Endpoints changed a file-delivered build")
		}
	})
}

func TestEndpointHealthStatuses(t *testing.T) {
	// Envoy reads UNKNOWN as healthy; the builder never leaves it unset.
	cla := ClusterLoadAssignment(edsCluster, edsPort, []discoveryv1.EndpointSlice{v4(ep("10.0.0.1", discoveryv1.EndpointConditions{}, ""), ep("10.0.0.2", condGone, ""))})
	for _, l := range cla.Endpoints {
		for _, e := range l.LbEndpoints {
			if e.HealthStatus != corev3.HealthStatus_HEALTHY && e.HealthStatus != corev3.HealthStatus_DRAINING {
				t.Errorf("health status %v, want HEALTHY or DRAINING", e.HealthStatus)
			}
		}
	}
	if diff := cmp.Diff(&corev3.Locality{Zone: "z"}, ClusterLoadAssignment(edsCluster, edsPort, []discoveryv1.EndpointSlice{v4(ep("10.0.0.1", condReady, "z"))}).Endpoints[0].Locality, protocmp.Transform()); diff != "" {
		t.Errorf("locality (-want +got):\n%s", diff)
	}
}
