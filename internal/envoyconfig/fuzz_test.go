package envoyconfig

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	"github.com/envoymesh/envoymesh-operator/api/v1alpha1"
)

// FuzzBuildSidecar builds a caller, its upstream MeshServices and a mesh from the
// fuzz input, every field clamped to what the CRD schema and its CEL rules admit,
// plus a few combinations only the builder can catch. BuildSidecar must then either
// fail, or produce files that Envoy's own validation accepts when read back, the
// same bytes twice; it must fail for the combinations it has to reject, and never
// panic. The seeds live in testdata/fuzz/FuzzBuildSidecar and run with go test.
func FuzzBuildSidecar(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		in := &fuzzInput{data: data}
		caller, found, mesh, mustFail := in.mesh()
		svc := ServiceFor(caller, found, mesh)
		in.secure(&svc)
		res, err := BuildSidecar(svc, Options{})
		if err != nil {
			return
		}
		if mustFail != "" {
			t.Fatalf("BuildSidecar accepted %s", mustFail)
		}
		out := mustRender(t, res)
		if err := validateRendered(out); err != nil {
			t.Fatalf("rendered config does not validate: %v\nlds:\n%s\ncds:\n%s", err, out.Listeners, out.Clusters)
		}
		if err := hashPoliciesOnHashClusters(out); err != nil {
			t.Fatal(err)
		}
		againRes, err := BuildSidecar(svc, Options{})
		if err != nil {
			t.Fatalf("second build failed: %v", err)
		}
		if againRes.Version != res.Version || againRes.BootstrapVersion != res.BootstrapVersion {
			t.Fatal("the same input gave another version")
		}
		again := mustRender(t, againRes)
		if !bytes.Equal(out.Listeners, again.Listeners) || !bytes.Equal(out.Clusters, again.Clusters) || !bytes.Equal(out.Bootstrap, again.Bootstrap) ||
			!bytes.Equal(out.SDSIdentity, again.SDSIdentity) || !bytes.Equal(out.SDSTrust, again.SDSTrust) {
			t.Fatal("the same input rendered different bytes")
		}
	})
}

// validateRendered reads the files back as Envoy would and validates every
// message, including those packed in Any fields, which ValidateAll skips: the
// bootstrap, lds.yaml and cds.yaml at ConfigVersion, and the SDS files, when
// rendered, with one secret each.
func validateRendered(out *Output) error {
	boot := &bootstrapv3.Bootstrap{}
	if err := readYAML(out.Bootstrap, boot); err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	if err := validateDeep(boot); err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	for file, data := range map[string][]byte{ListenersFile: out.Listeners, ClustersFile: out.Clusters, SDSIdentityFile: out.SDSIdentity, SDSTrustFile: out.SDSTrust} {
		sds := file == SDSIdentityFile || file == SDSTrustFile
		if sds && len(data) == 0 {
			continue
		}
		dr := &discoveryv3.DiscoveryResponse{}
		if err := readYAML(data, dr); err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		if !sds && dr.VersionInfo != out.ConfigVersion {
			return fmt.Errorf("%s: version_info %q, want %q", file, dr.VersionInfo, out.ConfigVersion)
		}
		if sds && (len(dr.Resources) != 1 || dr.VersionInfo == "") {
			return fmt.Errorf("%s: %d resources at version %q, want one secret and a version", file, len(dr.Resources), dr.VersionInfo)
		}
		for _, a := range dr.Resources {
			m, err := a.UnmarshalNew()
			if err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
			switch r := m.(type) {
			case *listenerv3.Listener, *clusterv3.Cluster:
				if sds {
					return fmt.Errorf("%s: unexpected resource %T", file, m)
				}
			case *tlsv3.Secret:
				if !sds || sdsFiles[r.Name] != file {
					return fmt.Errorf("%s: unexpected secret %q", file, r.Name)
				}
			default:
				return fmt.Errorf("%s: unexpected resource %T", file, m)
			}
			if err := validateDeep(m); err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
		}
	}
	return nil
}

func readYAML(data []byte, m proto.Message) error {
	j, err := yaml.YAMLToJSON(data)
	if err != nil {
		return err
	}
	return protojson.Unmarshal(j, m)
}

// validateDeep runs m's generated ValidateAll and recurses into every Any below it.
func validateDeep(m proto.Message) error {
	if v, ok := m.(validatable); ok {
		if err := v.ValidateAll(); err != nil {
			return fmt.Errorf("%T: %w", m, err)
		}
	}
	return walkAnys(m.ProtoReflect())
}

func walkAnys(msg protoreflect.Message) error {
	var err error
	msg.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() != protoreflect.MessageKind && fd.Kind() != protoreflect.GroupKind {
			return true
		}
		visit := func(m protoreflect.Message) bool {
			if a, ok := m.Interface().(*anypb.Any); ok {
				inner, uerr := a.UnmarshalNew()
				if uerr != nil {
					err = fmt.Errorf("%s: %w", a.TypeUrl, uerr)
					return false
				}
				err = validateDeep(inner)
				return err == nil
			}
			err = walkAnys(m)
			return err == nil
		}
		switch {
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				if !visit(l.Get(i).Message()) {
					return false
				}
			}
		case fd.IsMap():
			if fd.MapValue().Kind() != protoreflect.MessageKind {
				return true
			}
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool { return visit(mv.Message()) })
			return err == nil
		default:
			return visit(v.Message())
		}
		return true
	})
	return err
}

// fuzzInput hands out the fuzz bytes as small choices; once they run out every
// choice is zero, so short inputs still make a valid, small mesh.
type fuzzInput struct {
	data []byte
}

func (in *fuzzInput) byte() byte {
	if len(in.data) == 0 {
		return 0
	}
	b := in.data[0]
	in.data = in.data[1:]
	return b
}

func (in *fuzzInput) intn(n int) int { return int(in.byte()) % n }
func (in *fuzzInput) bool() bool     { return in.byte()&1 == 1 }

func (in *fuzzInput) uint32() uint32 {
	return uint32(in.byte()) | uint32(in.byte())<<8 | uint32(in.byte())<<16 | uint32(in.byte())<<24
}

// int32In is a value in [lo, hi].
func (in *fuzzInput) int32In(lo, hi int32) int32 {
	return lo + int32(uint64(in.uint32())%uint64(int64(hi)-int64(lo)+1))
}

func (in *fuzzInput) optInt32(lo, hi int32) *int32 {
	if !in.bool() {
		return nil
	}
	v := in.int32In(lo, hi)
	return &v
}

// port is 1-65535, at times from a small set so that clashes happen.
func (in *fuzzInput) port() int32 {
	if in.intn(4) == 0 {
		return []int32{8080, 9001, 9002, 15006, 9901, 15021}[in.intn(6)]
	}
	return in.int32In(1, 65535)
}

var fuzzUnits = []string{"ns", "us", "µs", "ms", "s", "m", "h"}

// duration is a positive duration the schema's pattern and CEL rule admit.
func (in *fuzzInput) duration() *v1alpha1.Duration {
	var s string
	switch in.intn(4) {
	case 0:
		s = fmt.Sprintf("%d%s", in.uint32()%100000+1, fuzzUnits[in.intn(len(fuzzUnits))])
	case 1:
		s = fmt.Sprintf("%d.%d%s", in.intn(100), in.intn(1000)+1, fuzzUnits[3+in.intn(4)])
	case 2:
		s = fmt.Sprintf("%dh%dm%ds", in.intn(1000), in.intn(60), in.intn(60)+1)
	default:
		s = []string{"1ns", "250ms", "1s", "15s", "2562047h"}[in.intn(5)]
	}
	d := v1alpha1.Duration(s)
	return &d
}

func (in *fuzzInput) optDuration() *v1alpha1.Duration {
	if !in.bool() {
		return nil
	}
	return in.duration()
}

// text is up to n bytes drawn from alphabet, at least one.
func (in *fuzzInput) text(alphabet string, n int) string {
	size := 1 + in.intn(n)
	var b strings.Builder
	for range size {
		b.WriteByte(alphabet[in.intn(len(alphabet))])
	}
	return b.String()
}

const headerToken = "-!#$%&'*+.^_|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

var fuzzLBs = []v1alpha1.LoadBalancer{"", v1alpha1.LoadBalancerRoundRobin, v1alpha1.LoadBalancerLeastRequest,
	v1alpha1.LoadBalancerRandom, v1alpha1.LoadBalancerRingHash, v1alpha1.LoadBalancerMaglev}

// traffic is a policy that passes the schema; httpOnly false leaves out what CEL
// forbids on a TCP MeshService's own spec.traffic.
func (in *fuzzInput) traffic(httpOnly bool) *v1alpha1.TrafficPolicy {
	if !in.bool() {
		return nil
	}
	tp := &v1alpha1.TrafficPolicy{
		LoadBalancer:   fuzzLBs[in.intn(len(fuzzLBs))],
		ConnectTimeout: in.optDuration(),
	}
	if httpOnly {
		tp.Timeout = (*v1alpha1.RequestTimeout)(in.optDuration())
		if isHashLB(tp.LoadBalancer) && in.bool() {
			tp.HashOn = &v1alpha1.HashOn{Header: in.text(headerToken, 32)}
		}
		if in.bool() {
			tp.Retries = &v1alpha1.RetryPolicy{Attempts: new(in.int32In(0, 10)), PerTryTimeout: in.optDuration()}
			if in.bool() {
				tp.Retries.RetryOn = in.text("abcdefghijklmnopqrstuvwxyz0123456789-,", 40)
				tp.Retries.RetryOn = strings.Trim(strings.ReplaceAll(tp.Retries.RetryOn, ",,", ","), ",")
			}
		}
	}
	if in.bool() {
		tp.CircuitBreaker = &v1alpha1.CircuitBreaker{
			MaxConnections:     in.optInt32(0, 1<<31-1),
			MaxPendingRequests: in.optInt32(0, 1<<31-1),
			MaxRequests:        in.optInt32(0, 1<<31-1),
			MaxRetries:         in.optInt32(0, 1<<31-1),
		}
	}
	if in.bool() {
		tp.OutlierDetection = &v1alpha1.OutlierDetection{
			Consecutive5xx:     in.optInt32(0, 1<<31-1),
			Interval:           in.optDuration(),
			BaseEjectionTime:   in.optDuration(),
			MaxEjectionPercent: in.optInt32(0, 100),
		}
	}
	if in.bool() {
		hc := &v1alpha1.HealthCheck{
			Interval:           in.optDuration(),
			Timeout:            in.optDuration(),
			HealthyThreshold:   in.optInt32(1, 1<<31-1),
			UnhealthyThreshold: in.optInt32(1, 1<<31-1),
		}
		if httpOnly && in.bool() {
			// The schema's pattern is ^/[^\s]*$: anything but whitespace, NUL included.
			hc.Path = "/" + strings.Map(func(r rune) rune {
				if strings.ContainsRune(" \t\n\f\r", r) {
					return -1
				}
				return r
			}, in.text("abc/.%?=&-_\x00\x7f~:é", 64))
		}
		if hc.Interval != nil && hc.Timeout != nil {
			ti, err1 := hc.Timeout.Parse()
			iv, err2 := hc.Interval.Parse()
			if err1 == nil && err2 == nil && ti >= iv {
				hc.Timeout, hc.Interval = nil, nil // CEL: timeout < interval
			}
		}
		tp.HealthCheck = hc
	}
	return tp
}

// secure gives svc an identity, and some of its upstreams a Peer, from the bytes
// the mesh left; with none left it stays plaintext, so the seeds keep their meaning.
func (in *fuzzInput) secure(svc *Service) {
	if in.intn(3) == 0 {
		return
	}
	modes := []v1alpha1.MTLSMode{v1alpha1.MTLSStrict, v1alpha1.MTLSPermissive}
	authz := []v1alpha1.AuthorizationMode{v1alpha1.AuthorizationEnforce, v1alpha1.AuthorizationAudit, v1alpha1.AuthorizationOff}
	svc.Security = &Security{MTLS: modes[in.intn(len(modes))], Authorization: authz[in.intn(len(authz))]}
	const label = "abcdefghijklmnopqrstuvwxyz0123456789-"
	for range in.intn(5) {
		svc.Security.Principals = append(svc.Security.Principals, "spiffe://cluster.local/ns/"+in.text(label, 12)+"/sa/"+in.text(label, 12))
	}
	for _, u := range svc.Upstreams {
		if u.Target != nil && in.bool() {
			u.Target.Peer = &Peer{
				SPIFFEID: "spiffe://cluster.local/ns/" + u.Namespace + "/sa/" + u.Name,
				SNI:      u.Name + "." + u.Namespace + ".svc.cluster.local",
			}
		}
	}
}

var fuzzProtocols = []v1alpha1.Protocol{v1alpha1.ProtocolHTTP, v1alpha1.ProtocolHTTP2, v1alpha1.ProtocolGRPC, v1alpha1.ProtocolTCP}

// mesh is a caller, the MeshServices it may call and a mesh. mustFail names the
// invalid combination it injected, if any, which BuildSidecar has to reject.
func (in *fuzzInput) mesh() (caller *v1alpha1.MeshService, found map[types.NamespacedName]*v1alpha1.MeshService, mesh *v1alpha1.ServiceMesh, mustFail string) {
	found = map[types.NamespacedName]*v1alpha1.MeshService{}
	caller = &v1alpha1.MeshService{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "caller"},
		Spec: v1alpha1.MeshServiceSpec{
			Port:        in.port(),
			ServicePort: in.port(),
			Protocol:    fuzzProtocols[in.intn(len(fuzzProtocols))],
		},
	}
	if in.bool() {
		mesh = &v1alpha1.ServiceMesh{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "default"},
			Spec:       v1alpha1.ServiceMeshSpec{Defaults: in.traffic(true)},
		}
	}
	names := []string{"a", "b", "c", "d"}
	for i := range in.intn(5) {
		u := v1alpha1.Upstream{Name: names[in.intn(len(names))], LocalPort: in.port()}
		if in.bool() {
			u.Namespace = []string{"ns", "other"}[in.intn(2)]
		}
		u.Traffic = in.traffic(true)
		key := u.Key(caller.Namespace)
		callee := found[key]
		if callee == nil && in.intn(4) != 0 {
			protocol := fuzzProtocols[in.intn(len(fuzzProtocols))]
			callee = &v1alpha1.MeshService{
				ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name},
				Spec: v1alpha1.MeshServiceSpec{
					ServicePort: in.port(),
					Protocol:    protocol,
					Traffic:     in.traffic(protocol != v1alpha1.ProtocolTCP),
				},
			}
			found[key] = callee
		}
		if callee != nil && callee.Spec.Protocol == v1alpha1.ProtocolTCP && mustFail == "" {
			if o := u.Traffic; o != nil && (o.Timeout != nil || o.Retries != nil || o.HashOn != nil || (o.HealthCheck != nil && o.HealthCheck.Path != "")) {
				mustFail = fmt.Sprintf("HTTP-only traffic in spec.upstreams[%d] for a TCP upstream", i)
			}
		}
		caller.Spec.Upstreams = append(caller.Spec.Upstreams, u)
	}
	if mustFail == "" {
		mustFail = portClash(caller)
	}
	if mustFail == "" {
		seen := map[types.NamespacedName]bool{}
		for _, u := range caller.Spec.Upstreams {
			if k := u.Key(caller.Namespace); seen[k] {
				mustFail = "an upstream listed twice: " + k.String()
			} else {
				seen[k] = true
			}
		}
	}
	return caller, found, mesh, mustFail
}

// portClash names two of the caller's ports that are equal or reserved, which CEL
// rejects for the caller and the builder rejects again.
func portClash(ms *v1alpha1.MeshService) string {
	used := map[int32]string{AdminPort: "the admin port", StatusPort: "the status port"}
	ports := []struct {
		what string
		port int32
	}{{"port", ms.Spec.Port}, {"servicePort", ms.Spec.ServicePort}}
	for i, u := range ms.Spec.Upstreams {
		ports = append(ports, struct {
			what string
			port int32
		}{fmt.Sprintf("upstreams[%d].localPort", i), u.LocalPort})
	}
	for _, p := range ports {
		if other, ok := used[p.port]; ok {
			return fmt.Sprintf("%s %d equal to %s", p.what, p.port, other)
		}
		used[p.port] = p.what
	}
	return ""
}

// hashPoliciesOnHashClusters checks that a route hashes only towards a cluster
// whose load balancer reads the hash.
func hashPoliciesOnHashClusters(out *Output) error {
	lbs := map[string]clusterv3.Cluster_LbPolicy{}
	dr := &discoveryv3.DiscoveryResponse{}
	if err := readYAML(out.Clusters, dr); err != nil {
		return err
	}
	for _, a := range dr.Resources {
		c := &clusterv3.Cluster{}
		if err := a.UnmarshalTo(c); err != nil {
			return err
		}
		lbs[c.Name] = c.LbPolicy
	}
	dr = &discoveryv3.DiscoveryResponse{}
	if err := readYAML(out.Listeners, dr); err != nil {
		return err
	}
	for _, a := range dr.Resources {
		l := &listenerv3.Listener{}
		if err := a.UnmarshalTo(l); err != nil {
			return err
		}
		for _, fc := range l.FilterChains {
			for _, f := range fc.Filters {
				hcm := &hcmv3.HttpConnectionManager{}
				if f.GetTypedConfig().UnmarshalTo(hcm) != nil {
					continue
				}
				for _, vh := range hcm.GetRouteConfig().GetVirtualHosts() {
					for _, r := range vh.Routes {
						action := r.GetRoute()
						if len(action.GetHashPolicy()) == 0 {
							continue
						}
						if lb := lbs[action.GetCluster()]; lb != clusterv3.Cluster_RING_HASH && lb != clusterv3.Cluster_MAGLEV {
							return fmt.Errorf("listener %s hashes requests to cluster %q with lb_policy %v", l.Name, action.GetCluster(), lb)
						}
					}
				}
			}
		}
	}
	return nil
}
