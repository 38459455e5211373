package envoyconfig

import (
	"bytes"
	"path/filepath"
	"slices"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"google.golang.org/protobuf/proto"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/envoymesh/envoymesh-operator/api/v1alpha1"
)

// observabilityMesh is a ServiceMesh in namespace shop with the given access
// log and tracing.
func observabilityMesh(al *v1alpha1.AccessLog, tr *v1alpha1.Tracing) *v1alpha1.ServiceMesh {
	return &v1alpha1.ServiceMesh{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "default"},
		Spec:       v1alpha1.ServiceMeshSpec{AccessLog: al, Tracing: tr},
	}
}

// collectorTracing names the collector otel/observability on its default port,
// sampling 10%.
func collectorTracing() *v1alpha1.Tracing {
	return &v1alpha1.Tracing{
		Collector:          v1alpha1.CollectorRef{Name: "otel", Namespace: "observability"},
		SamplingPercentage: i32(10),
	}
}

// tcpCaller is a TCP service that calls a TCP and an HTTP upstream.
func tcpCaller() Service {
	return Service{Name: "ledger", Namespace: "shop", Port: 7000, ServicePort: 17000, Protocol: v1alpha1.ProtocolTCP,
		Upstreams: []Upstream{
			{Name: "cache", Namespace: "infra", LocalPort: 9102, Target: &Target{ServicePort: 16379, Protocol: v1alpha1.ProtocolTCP, Traffic: MergeTraffic()}},
			{Name: "payments", Namespace: "shop", LocalPort: 9101, Target: &Target{ServicePort: 15006, Protocol: v1alpha1.ProtocolGRPC, Traffic: MergeTraffic()}},
		}}
}

// observabilityGoldenCases pin testdata/observability/<name>: lds.yaml always,
// cds.yaml when the case traces (the collector's cluster). The bootstrap never
// changes, and without tracing neither do the clusters; the test holds both
// equal to the same build without observability.
var observabilityGoldenCases = []struct {
	name    string
	gateway bool
	svc     func() Service // a sidecar, unless gateway
	obs     Observability
}{
	{name: "access-log-json", svc: featureService, obs: ObservabilityFor(observabilityMesh(&v1alpha1.AccessLog{Format: v1alpha1.AccessLogJSON}, nil))},
	{name: "access-log-text", svc: featureService, obs: ObservabilityFor(observabilityMesh(&v1alpha1.AccessLog{Format: v1alpha1.AccessLogText}, nil))},
	{name: "tracing-sidecar-http", svc: seedServiceA, obs: ObservabilityFor(observabilityMesh(nil, collectorTracing()))},
	{name: "tracing-sidecar-tcp", svc: tcpCaller, obs: ObservabilityFor(observabilityMesh(nil, collectorTracing()))},
	{name: "tracing-gateway", gateway: true, obs: ObservabilityFor(observabilityMesh(&v1alpha1.AccessLog{}, collectorTracing()))},
}

func featureService() Service {
	caller, found, mesh := featureMesh()
	return ServiceFor(caller, found, mesh)
}

func seedServiceA() Service {
	mss := seedMesh()
	return ServiceFor(mss[0], foundMap(mss...), nil)
}

func seedGateway() Gateway {
	return GatewayFor(seedGatewayMesh(), foundMap(seedMesh()...))
}

func TestGoldenObservability(t *testing.T) {
	for _, tc := range observabilityGoldenCases {
		t.Run(tc.name, func(t *testing.T) {
			var out, plain *Output
			if tc.gateway {
				gw := seedGateway()
				plain = buildGateway(t, gw)
				gw.Observability = tc.obs
				out = buildGateway(t, gw)
			} else {
				svc := tc.svc()
				plain = build(t, svc)
				svc.Observability = tc.obs
				out = build(t, svc)
			}
			if err := validateRendered(out); err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join("observability", tc.name)
			checkGolden(t, dir, ListenersFile, out.Listeners)
			if !bytes.Equal(out.Bootstrap, plain.Bootstrap) {
				t.Error("observability changed the bootstrap")
			}
			if tc.obs.Tracing != nil {
				checkGolden(t, dir, ClustersFile, out.Clusters)
				return
			}
			_, clusters := parseClusters(t, out.Clusters)
			_, plainClusters := parseClusters(t, plain.Clusters)
			if !slices.EqualFunc(clusters, plainClusters, func(a, b *clusterv3.Cluster) bool { return proto.Equal(a, b) }) {
				t.Errorf("the access log changed the clusters: %v, want %v", clusterNames(clusters), clusterNames(plainClusters))
			}
		})
	}
}
