package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/go-logr/logr/testr"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/envoymesh/envoymesh-operator/api/v1alpha1"
	"github.com/envoymesh/envoymesh-operator/internal/envoyadmin"
	"github.com/envoymesh/envoymesh-operator/internal/envoyconfig"
	"github.com/envoymesh/envoymesh-operator/internal/identity"
	"github.com/envoymesh/envoymesh-operator/internal/xds"
)

const (
	trustDomain = "cluster.local"
	serverID    = "spiffe://cluster.local/ns/envoymesh-system/sa/envoymesh-controller-manager"
)

// pki is the mesh CA, as the operator's signer holds it.
type pki struct{ ca *identity.CA }

func newPKI(t *testing.T) *pki {
	t.Helper()
	ca, err := identity.GenerateCA(trustDomain, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return &pki{ca: ca}
}

// issue signs a fresh key for spiffeID and returns the key and the leaf's chain.
func (p *pki) issue(t *testing.T, spiffeID string) (*ecdsa.PrivateKey, *identity.Leaf) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := p.ca.Issue(key.Public(), spiffeID, 24*time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return key, leaf
}

// writeIdentity writes a pod's identity volume as the kubelet double does:
// bundle.pem (the key, then the chain) and ca.pem (the anchors).
func (p *pki) writeIdentity(t *testing.T, kubeletDir, uid, spiffeID string) {
	t.Helper()
	key, leaf := p.issue(t, spiffeID)
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := identityDir(kubeletDir, uid)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bundle := append(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), leaf.ChainPEM...)
	if err := os.WriteFile(filepath.Join(dir, envoyconfig.TrustBundleFile), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.ca.Cert.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, envoyconfig.CredentialBundleFile), bundle, 0o600); err != nil {
		t.Fatal(err)
	}
}

// xdsServer is an internal/xds.Server on 127.0.0.1 that can be stopped and
// started again on the same address, as a manager restarts.
type xdsServer struct {
	*xds.Server
	addr string
	stop func()
}

// authorize is the controller's rule in miniature: a proxy may fetch the
// config of the MeshService named after the ServiceAccount its certificate names.
func authorize(n *corev3.Node, spiffeID string) error {
	name, namespace, err := xds.ParseNode(n)
	if err != nil {
		return err
	}
	if want := identity.SPIFFEID(trustDomain, namespace, name); spiffeID != want {
		return fmt.Errorf("the identity of %s/%s is %s", namespace, name, want)
	}
	return nil
}

func startXDS(t *testing.T, p *pki, addr string) *xdsServer {
	t.Helper()
	key, leaf := p.issue(t, serverID)
	roots := x509.NewCertPool()
	roots.AddCert(p.ca.Cert)
	srv, err := xds.New(xds.Options{
		TLS:       &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{leaf.Cert.Raw}, PrivateKey: key}}, ClientCAs: roots},
		Authorize: authorize,
		Log:       testr.NewWithOptions(t, testr.Options{Verbosity: 0}),
	})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}
	t.Cleanup(stop)
	return &xdsServer{Server: srv, addr: lis.Addr().String(), stop: stop}
}

// meshConfig builds MeshService a's XDS-mesh config in namespace ns, calling b
// on localPort, with b's endpoints, for the server at addr.
func meshConfig(t *testing.T, addr string, localPort int32, endpoints ...*endpointv3.LbEndpoint) *envoyconfig.Resources {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	var portNum int32
	fmt.Sscan(port, &portNum)
	ads, err := envoyconfig.ADSDelivery(envoyconfig.ADS{Address: host, Port: portNum, ServerSPIFFEID: serverID})
	if err != nil {
		t.Fatal(err)
	}
	svc := envoyconfig.Service{
		Name: "a", Namespace: "ns", Port: 8080, ServicePort: 15006, Protocol: v1alpha1.ProtocolHTTP,
		Upstreams: []envoyconfig.Upstream{{
			Name: "b", Namespace: "ns", LocalPort: localPort,
			Target: &envoyconfig.Target{ServicePort: 15006, Protocol: v1alpha1.ProtocolHTTP, Traffic: envoyconfig.MergeTraffic(nil)},
		}},
	}
	cluster := envoyconfig.UpstreamClusterName("b", "ns")
	res, err := envoyconfig.BuildSidecar(svc, envoyconfig.Options{
		ClusterDomain: "cluster.local",
		Delivery:      &ads,
		Endpoints:     map[string]*endpointv3.ClusterLoadAssignment{cluster: assignment(cluster, endpoints...)},
	})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func assignment(cluster string, endpoints ...*endpointv3.LbEndpoint) *endpointv3.ClusterLoadAssignment {
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: cluster}
	if len(endpoints) > 0 {
		cla.Endpoints = []*endpointv3.LocalityLbEndpoints{{LbEndpoints: endpoints}}
	}
	return cla
}

func endpoint(ip string, health corev3.HealthStatus) *endpointv3.LbEndpoint {
	return &endpointv3.LbEndpoint{
		HealthStatus: health,
		HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 15006},
			}}},
		}},
	}
}

// adsConfigMap is the ConfigMap the operator writes for res: the files Render writes.
func adsConfigMap(t *testing.T, res *envoyconfig.Resources) *corev1.ConfigMap {
	t.Helper()
	out, err := envoyconfig.Render(res)
	if err != nil {
		t.Fatal(err)
	}
	if out.Listeners != nil || out.Clusters != nil {
		t.Fatal("an ADS config rendered lds.yaml or cds.yaml")
	}
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "a-envoy"},
		Data: map[string]string{
			envoyconfig.BootstrapFile: string(out.Bootstrap),
			"sds-identity.yaml":       string(out.SDSIdentity),
			"sds-trust.yaml":          string(out.SDSTrust),
		},
	}
}

func TestParseADSBootstrap(t *testing.T) {
	cm := adsConfigMap(t, meshConfig(t, "127.0.0.1:18000", 9001))
	got, err := parseADSBootstrap(cm.Data[envoyconfig.BootstrapFile])
	if err != nil {
		t.Fatal(err)
	}
	want := adsBootstrap{Target: "127.0.0.1:18000", ServerID: serverID, NodeCluster: "a", NodeOnFirstRequestOnly: true}
	if got == nil || *got != want {
		t.Fatalf("parseADSBootstrap = %+v, want %+v", got, want)
	}

	golden, err := os.ReadFile("../../internal/envoyconfig/testdata/xds/service-a/envoy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parseADSBootstrap(string(golden)); err == nil || !strings.Contains(err.Error(), "not a loopback IP") {
		t.Errorf("a bootstrap dialing a DNS name: err %v, want a refusal naming loopback", err)
	}

	file, err := envoyconfig.Bootstrap("a.ns", "a", envoyconfig.FileDelivery())
	if err != nil {
		t.Fatal(err)
	}
	for name, bootstrap := range map[string]string{"file delivery": protoYAML(t, file), "no envoy.yaml": ""} {
		if got, err := parseADSBootstrap(bootstrap); got != nil || err != nil {
			t.Errorf("%s: parseADSBootstrap = %+v, %v; want nil, nil", name, got, err)
		}
	}
}

func protoYAML(t *testing.T, m proto.Message) string {
	t.Helper()
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b) // JSON is YAML
}

// xdsHarness is the double with one pod, a-1 of MeshService a in namespace ns,
// stepped by the test.
type xdsHarness struct {
	t   *testing.T
	d   *double
	s   *sidecar
	cm  *corev1.ConfigMap
	ctl http.Handler
}

func newHarness(t *testing.T, kubeletDir string, cm *corev1.ConfigMap) *xdsHarness {
	d := &double{kubeletDir: kubeletDir, sidecars: map[string]*sidecar{}, faults: map[string]string{}}
	s := &sidecar{key: "ns/a-1/uid-1", owner: "ns/a", uid: "uid-1", identity: true, addr: "127.0.0.1:0", configMap: "a-envoy"}
	d.sidecars[s.key] = s
	t.Cleanup(func() { s.closeStatus(); s.closeXDS() })
	return &xdsHarness{t: t, d: d, s: s, cm: cm, ctl: d.controlHandler()}
}

func (h *xdsHarness) step() {
	h.d.step(h.s, func(string, string) (*corev1.ConfigMap, error) { return h.cm, nil }, nil)
}

// until steps the double until ok holds; the deadline only bounds a failure.
func (h *xdsHarness) until(what string, ok func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		h.step()
		if ok() {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s; sidecar: %+v", what, h.info())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (h *xdsHarness) info() SidecarInfo {
	rec := httptest.NewRecorder()
	h.ctl.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/sidecars", nil))
	var infos []SidecarInfo
	if err := json.NewDecoder(rec.Body).Decode(&infos); err != nil || len(infos) != 1 {
		h.t.Fatalf("GET /sidecars: %v, %d sidecars", err, len(infos))
	}
	return infos[0]
}

func (h *xdsHarness) control(method, target string) int {
	rec := httptest.NewRecorder()
	h.ctl.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
	return rec.Code
}

func (h *xdsHarness) stats() envoyadmin.Stats {
	h.t.Helper()
	st, err := envoyadmin.NewClient(nil, 0).Stats(context.Background(), h.s.statusURL())
	if err != nil {
		h.t.Fatal(err)
	}
	return st
}

// connectedState reads control_plane.connected_state, which envoyadmin does not.
func (h *xdsHarness) connectedState() any {
	h.t.Helper()
	resp, err := http.Get(h.s.statusURL() + "/stats?format=json&filter=" + "^control_plane")
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Stats []struct {
			Name  string `json:"name"`
			Value any    `json:"value"`
		} `json:"stats"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		h.t.Fatal(err)
	}
	var names []string
	var value any
	for _, s := range body.Stats {
		if s.Name != "" {
			names = append(names, s.Name)
			value = s.Value
		}
	}
	if !slices.Equal(names, []string{connectedStateStat}) {
		h.t.Fatalf("filtered stats %v, want only %s", names, connectedStateStat)
	}
	return value
}

func (h *xdsHarness) clusters() map[string]envoyadmin.ClusterHealth {
	h.t.Helper()
	cs, err := envoyadmin.NewClient(nil, 0).Clusters(context.Background(), h.s.statusURL())
	if err != nil {
		h.t.Fatal(err)
	}
	out := map[string]envoyadmin.ClusterHealth{}
	for _, c := range cs {
		out[c.Name] = c
	}
	return out
}

func (h *xdsHarness) state() string {
	h.t.Helper()
	info, err := envoyadmin.NewClient(nil, 0).ServerInfo(context.Background(), h.s.statusURL())
	if err != nil {
		h.t.Fatal(err)
	}
	return info.State
}

// proxy is the server's view of the pod's stream, nil without one.
func proxy(srv *xdsServer) *xds.ProxyStatus {
	for _, p := range srv.Status(xds.NodeKey("a", "ns")).Proxies {
		if p.NodeID == "a-1.ns" {
			return &p
		}
	}
	return nil
}

// TestXDSSidecar follows one pod of an XDS mesh against a real xDS server on
// 127.0.0.1: it waits for its certificate, connects with it as node a-1.ns,
// ACKs, reports the ACKed versions and its EDS hosts on its status port,
// follows an EDS change, NACKs once on request with the given message, and
// reconnects to a restarted server.
func TestXDSSidecar(t *testing.T) {
	p := newPKI(t)
	srv := startXDS(t, p, "127.0.0.1:0")
	cluster := envoyconfig.UpstreamClusterName("b", "ns")
	res := meshConfig(t, srv.addr, 9001, endpoint("127.0.0.11", corev3.HealthStatus_HEALTHY), endpoint("127.0.0.12", corev3.HealthStatus_DRAINING))
	if err := srv.SetSnapshot(context.Background(), xds.NodeKey("a", "ns"), res); err != nil {
		t.Fatal(err)
	}
	kubeletDir := t.TempDir()
	h := newHarness(t, kubeletDir, adsConfigMap(t, res))

	h.step()
	if info := h.info(); info.Delivery != "XDS" || info.XDS == nil || info.XDS.Connected || info.XDS.Target != srv.addr || info.XDS.Node != "a-1.ns" {
		t.Fatalf("before the certificate: %+v (xds %+v), want an unconnected XDS sidecar for %s", info, info.XDS, srv.addr)
	}
	if got := h.state(); got != "INITIALIZING" {
		t.Errorf("state before any listener: %s, want INITIALIZING", got)
	}
	if got := h.connectedState(); got != float64(0) {
		t.Errorf("connected_state before the certificate: %v, want 0", got)
	}

	p.writeIdentity(t, kubeletDir, "uid-1", identity.SPIFFEID(trustDomain, "ns", "a"))
	h.until("the proxy synced at the snapshot", func() bool {
		px := proxy(srv)
		return px != nil && px.Synced(srv.Status(xds.NodeKey("a", "ns")).Snapshot)
	})
	if px := proxy(srv); px.SPIFFEID != identity.SPIFFEID(trustDomain, "ns", "a") || px.ConfigVersion() != res.Version {
		t.Errorf("server sees %+v, want a-1.ns as a's identity at %s", px, res.Version)
	}
	h.until("the stub reporting the ACK", func() bool { return h.stats().LDS.VersionText == res.Version })
	st := h.stats()
	if st.CDS.VersionText != res.Version || st.LDS.UpdateRejected != 0 || st.CDS.UpdateRejected != 0 {
		t.Errorf("stats %+v, want LDS and CDS at %s, nothing rejected", st, res.Version)
	}
	if got := h.connectedState(); got != float64(1) {
		t.Errorf("connected_state: %v, want 1", got)
	}
	if got := h.state(); got != "LIVE" {
		t.Errorf("state: %s, want LIVE", got)
	}
	if got := h.clusters()[cluster]; got.Hosts != 2 || got.Healthy != 1 {
		t.Errorf("/clusters %s: %+v, want 2 hosts from EDS, 1 healthy (the other DRAINING)", cluster, got)
	}

	{ // EDS change
		more, err := res.WithEndpoints(map[string]*endpointv3.ClusterLoadAssignment{cluster: assignment(cluster,
			endpoint("127.0.0.11", corev3.HealthStatus_HEALTHY), endpoint("127.0.0.12", corev3.HealthStatus_HEALTHY), endpoint("127.0.0.13", corev3.HealthStatus_HEALTHY))})
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.SetSnapshot(context.Background(), xds.NodeKey("a", "ns"), more); err != nil {
			t.Fatal(err)
		}
		h.until("3 healthy hosts", func() bool { c := h.clusters()[cluster]; return c.Hosts == 3 && c.Healthy == 3 })
		if info := h.info(); info.XDS.EDS != more.EndpointsVersion || info.XDS.LDS != res.Version {
			t.Errorf("after the EDS change: %+v, want EDS at %s and LDS still at %s", info.XDS, more.EndpointsVersion, res.Version)
		}
		res = more
	}

	{ // NACK on request
		if code := h.control(http.MethodPut, "/nack/ns/ghost?message=x"); code != http.StatusNotFound {
			t.Errorf("PUT /nack of a service without sidecars: %d, want 404", code)
		}
		if code := h.control(http.MethodPut, "/nack/ns/a?message=x&pod=a-2"); code != http.StatusNotFound {
			t.Errorf("PUT /nack of another pod: %d, want 404", code)
		}
		if code := h.control(http.MethodPut, "/nack/ns/a?pod=a-1&message=listener+80+is+bad"); code != http.StatusNoContent {
			t.Fatalf("PUT /nack: %d, want 204", code)
		}
		if info := h.info(); info.XDS.NACKArmed != "listener 80 is bad" {
			t.Errorf("armed NACK %q, want the message", info.XDS.NACKArmed)
		}
		bad := meshConfig(t, srv.addr, 9002, endpoint("127.0.0.11", corev3.HealthStatus_HEALTHY))
		if err := srv.SetSnapshot(context.Background(), xds.NodeKey("a", "ns"), bad); err != nil {
			t.Fatal(err)
		}
		h.until("the server seeing the NACK", func() bool { px := proxy(srv); return px != nil && px.NACK != nil })
		px := proxy(srv)
		if px.NACK.Version != bad.Version || px.NACK.Message != "listener 80 is bad" || px.NACK.TypeURL != xds.ListenerType {
			t.Errorf("NACK %+v, want LDS version %s with the message", px.NACK, bad.Version)
		}
		h.until("the stub counting the NACK", func() bool { return h.stats().LDS.UpdateRejected == 1 })
		if st := h.stats(); st.LDS.VersionText != res.Version {
			t.Errorf("after the NACK LDS runs %s, want %s", st.LDS.VersionText, res.Version)
		}
		if info := h.info(); info.XDS.NACKArmed != "" || info.XDS.LastNACK != "listener 80 is bad" {
			t.Errorf("after the NACK: %+v, want it disarmed with the last NACK's message", info.XDS)
		}

		good := meshConfig(t, srv.addr, 9003, endpoint("127.0.0.11", corev3.HealthStatus_HEALTHY))
		if err := srv.SetSnapshot(context.Background(), xds.NodeKey("a", "ns"), good); err != nil {
			t.Fatal(err)
		}
		h.until("the next version ACKed", func() bool {
			px := proxy(srv)
			return px != nil && px.ConfigVersion() == good.Version && px.NACK == nil
		})
		res = good
	}

	{ // reject fault
		h.d.faults["ns/a"] = faultReject
		bad := meshConfig(t, srv.addr, 9004, endpoint("127.0.0.11", corev3.HealthStatus_HEALTHY))
		h.step()
		if err := srv.SetSnapshot(context.Background(), xds.NodeKey("a", "ns"), bad); err != nil {
			t.Fatal(err)
		}
		h.until("the fault's NACK", func() bool { px := proxy(srv); return px != nil && px.NACK != nil && px.NACK.Version == bad.Version })
		if px := proxy(srv); px.NACK.Message != rejectFaultMessage {
			t.Errorf("NACK message %q, want the fault's", px.NACK.Message)
		}
		delete(h.d.faults, "ns/a")
		if err := srv.SetSnapshot(context.Background(), xds.NodeKey("a", "ns"), res); err != nil {
			t.Fatal(err)
		}
		h.until("back in sync", func() bool { px := proxy(srv); return px != nil && px.ConfigVersion() == res.Version && px.NACK == nil })
	}

	{ // server restart
		addr := srv.addr
		srv.stop()
		h.until("the stream gone", func() bool { return !h.info().XDS.Connected })
		if got := h.connectedState(); got != float64(0) {
			t.Errorf("connected_state without a server: %v, want 0", got)
		}
		srv = startXDS(t, p, addr)
		if err := srv.SetSnapshot(context.Background(), xds.NodeKey("a", "ns"), res); err != nil {
			t.Fatal(err)
		}
		h.until("synced with the new server", func() bool {
			px := proxy(srv)
			return px != nil && px.Synced(srv.Status(xds.NodeKey("a", "ns")).Snapshot)
		})
		if info := h.info(); info.XDS.Streams < 2 || info.XDS.LDS != res.Version {
			t.Errorf("after the restart: %+v, want a second stream at %s", info.XDS, res.Version)
		}
	}

	{ // die
		h.d.faults["ns/a"] = faultDie
		h.until("the stream closed", func() bool { return srv.Status(xds.NodeKey("a", "ns")).Streams == 0 })
		if h.s.stub != nil || h.s.xds != nil {
			t.Fatal("a dead sidecar still serves")
		}
		delete(h.d.faults, "ns/a")
		h.until("a new Envoy synced", func() bool {
			px := proxy(srv)
			return px != nil && px.Synced(srv.Status(xds.NodeKey("a", "ns")).Snapshot)
		})
		if info := h.info(); info.XDS.Streams != 1 {
			t.Errorf("the Envoy that came back has %d streams, want its first", info.XDS.Streams)
		}
	}
}

// TestXDSSidecarRefusedIdentity: a pod whose certificate names another
// service is refused by the server, and the double keeps retrying without
// ever syncing.
func TestXDSSidecarRefusedIdentity(t *testing.T) {
	p := newPKI(t)
	srv := startXDS(t, p, "127.0.0.1:0")
	res := meshConfig(t, srv.addr, 9001)
	if err := srv.SetSnapshot(context.Background(), xds.NodeKey("a", "ns"), res); err != nil {
		t.Fatal(err)
	}
	kubeletDir := t.TempDir()
	p.writeIdentity(t, kubeletDir, "uid-1", identity.SPIFFEID(trustDomain, "ns", "intruder"))
	h := newHarness(t, kubeletDir, adsConfigMap(t, res))
	h.until("a refused stream", func() bool {
		info := h.info()
		return info.XDS != nil && strings.Contains(info.XDS.Error, "PermissionDenied")
	})
	if info := h.info(); info.XDS.LDS != "" || info.XDS.CDS != "" {
		t.Errorf("a refused sidecar ACKed something: %+v", info.XDS)
	}
}

// TestNACKNeedsXDSSidecar: /nack only knows XDS sidecars; a file-delivered one is a 404.
func TestNACKNeedsXDSSidecar(t *testing.T) {
	h := newHarness(t, "", configMap("v1"))
	h.step()
	if info := h.info(); info.Delivery != "ConfigMap" || info.XDS != nil || info.Version != "v1" {
		t.Fatalf("a file-delivered sidecar: %+v", info)
	}
	for _, method := range []string{http.MethodPut, http.MethodDelete} {
		if code := h.control(method, "/nack/ns/a?message=x"); code != http.StatusNotFound {
			t.Errorf("%s /nack of a file-delivered sidecar: %d, want 404", method, code)
		}
	}
}

// TestContentHashIgnoresOrder: the server lists a response's resources in map order.
func TestContentHashIgnoresOrder(t *testing.T) {
	a, b := &anypb.Any{TypeUrl: "t", Value: []byte("a")}, &anypb.Any{TypeUrl: "t", Value: []byte("b")}
	if contentHash([]*anypb.Any{a, b}) != contentHash([]*anypb.Any{b, a}) {
		t.Error("the same resources in another order hash differently")
	}
	if contentHash([]*anypb.Any{a, b}) == contentHash([]*anypb.Any{a}) || contentHash([]*anypb.Any{{TypeUrl: "ta", Value: nil}}) == contentHash([]*anypb.Any{{TypeUrl: "t", Value: []byte("a")}}) {
		t.Error("different resources hash the same")
	}
}
