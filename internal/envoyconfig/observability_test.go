package envoyconfig

import (
	"slices"
	"strings"
	"testing"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tracev3 "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/envoymesh/envoymesh-operator/api/v1alpha1"
)

// The operators the issue asks every HTTP access log line to carry, and the
// ones a TCP line can fill.
var (
	requiredHTTPOperators = []string{
		"%REQ(X-REQUEST-ID)%", "%REQ(:METHOD)%", "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%", "%RESPONSE_CODE%",
		"%RESPONSE_FLAGS%", "%UPSTREAM_CLUSTER%", "%UPSTREAM_HOST%", "%DURATION%", "%RESPONSE_DURATION%",
		"%BYTES_RECEIVED%", "%BYTES_SENT%", "%DOWNSTREAM_REMOTE_ADDRESS%", "%START_TIME%", "%DOWNSTREAM_PEER_URI_SAN%",
	}
	requiredTCPOperators = []string{
		"%RESPONSE_FLAGS%", "%UPSTREAM_CLUSTER%", "%UPSTREAM_HOST%", "%DURATION%",
		"%BYTES_RECEIVED%", "%BYTES_SENT%", "%DOWNSTREAM_REMOTE_ADDRESS%", "%START_TIME%", "%DOWNSTREAM_PEER_URI_SAN%",
	}
)

// chainFilters are the network filters of every filter chain of l, the
// default chain included, unpacked into HCMs and TCP proxies.
func chainFilters(t *testing.T, l *listenerv3.Listener) (hcms []*hcmv3.HttpConnectionManager, tcps []*tcpproxyv3.TcpProxy) {
	t.Helper()
	chains := slices.Clone(l.FilterChains)
	if l.DefaultFilterChain != nil {
		chains = append(chains, l.DefaultFilterChain)
	}
	for _, fc := range chains {
		for _, f := range fc.Filters {
			switch f.Name {
			case hcmFilterName:
				hcm := &hcmv3.HttpConnectionManager{}
				if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
					t.Fatal(err)
				}
				hcms = append(hcms, hcm)
			case tcpProxyFilterName:
				tp := &tcpproxyv3.TcpProxy{}
				if err := f.GetTypedConfig().UnmarshalTo(tp); err != nil {
					t.Fatal(err)
				}
				tcps = append(tcps, tp)
			}
		}
	}
	return hcms, tcps
}

// stdoutFormat is the one access log of a filter: stdout, and its format.
func stdoutFormat(t *testing.T, logs []*accesslogv3.AccessLog) *corev3.SubstitutionFormatString {
	t.Helper()
	if len(logs) != 1 || logs[0].Name != stdoutAccessLogName {
		t.Fatalf("want one %s access log, got %v", stdoutAccessLogName, logs)
	}
	cfg := &streamv3.StdoutAccessLog{}
	if err := logs[0].GetTypedConfig().UnmarshalTo(cfg); err != nil {
		t.Fatal(err)
	}
	return cfg.GetLogFormat()
}

// formatOperators is what a format writes: JSON keys to values, or the Text line.
func formatOperators(t *testing.T, f *corev3.SubstitutionFormatString) (map[string]string, string) {
	t.Helper()
	if j := f.GetJsonFormat(); j != nil {
		out := map[string]string{}
		for k, v := range j.Fields {
			out[k] = v.GetStringValue()
		}
		return out, ""
	}
	return nil, f.GetTextFormatSource().GetInlineString()
}

func withObservability(svc Service, o Observability) Service {
	svc.Observability = o
	return svc
}

func accessLogOf(format v1alpha1.AccessLogFormat) Observability {
	return Observability{AccessLog: &AccessLogSpec{Format: format}}
}

func tracingOf(pct float64) Observability {
	return Observability{Tracing: &TracingSpec{CollectorName: "otel", CollectorNamespace: "observability", CollectorPort: 4317, SamplingPercentage: pct}}
}

// TestAccessLogFormats: each format carries every required field, HTTP and TCP,
// JSON with the keys of AccessLogFields and Text as key=value pairs, one line each.
func TestAccessLogFormats(t *testing.T) {
	for _, format := range []v1alpha1.AccessLogFormat{v1alpha1.AccessLogJSON, v1alpha1.AccessLogText} {
		t.Run(string(format), func(t *testing.T) {
			out := build(t, withObservability(tcpCaller(), accessLogOf(format)))
			_, ls := parseListeners(t, out.Listeners)
			check := func(name string, f *corev3.SubstitutionFormatString, want []string, fields []AccessLogField) {
				t.Helper()
				obj, text := formatOperators(t, f)
				for _, op := range want {
					found := strings.Contains(text, op)
					for _, v := range obj {
						found = found || v == op
					}
					if !found {
						t.Errorf("%s: %s format lacks %s", name, format, op)
					}
				}
				if format == v1alpha1.AccessLogJSON {
					want := map[string]string{}
					for _, f := range fields {
						want[f.Key] = f.Operator
					}
					if diff := cmp.Diff(want, obj); diff != "" {
						t.Errorf("%s: JSON keys (-want +got):\n%s", name, diff)
					}
					return
				}
				if !strings.HasSuffix(text, "\n") || strings.Count(text, "\n") != 1 {
					t.Errorf("%s: Text format %q is not one line ending in a newline", name, text)
				}
				for i, pair := range strings.Fields(text) {
					if pair != fields[i].Key+"="+fields[i].Operator {
						t.Errorf("%s: Text field %d is %q, want %s=%s", name, i, pair, fields[i].Key, fields[i].Operator)
					}
				}
			}
			for _, l := range ls {
				hcms, tcps := chainFilters(t, l)
				for _, hcm := range hcms {
					check(l.Name, stdoutFormat(t, hcm.AccessLog), requiredHTTPOperators, AccessLogFields)
				}
				for _, tp := range tcps {
					check(l.Name, stdoutFormat(t, tp.AccessLog), requiredTCPOperators, TCPAccessLogFields())
				}
			}
		})
	}
}

// TestAccessLogOnEveryListener: every filter chain of every listener logs, the
// Permissive plaintext chain and an unresolved upstream's 503 included, the
// gateway too; the status listener never does.
func TestAccessLogOnEveryListener(t *testing.T) {
	caller := meshCaller()
	caller.Security.MTLS = v1alpha1.MTLSPermissive
	caller.Upstreams = append(caller.Upstreams, Upstream{Name: "ghost", Namespace: "shop", LocalPort: 9199})
	tcp := secureService(v1alpha1.ProtocolTCP, v1alpha1.MTLSPermissive, v1alpha1.AuthorizationEnforce, spiffeA)
	gw := seedGateway()
	gw.Observability = accessLogOf(v1alpha1.AccessLogJSON)
	outs := map[string]*Output{
		"http caller": build(t, withObservability(caller, accessLogOf(v1alpha1.AccessLogJSON))),
		"tcp service": build(t, withObservability(tcp, accessLogOf(v1alpha1.AccessLogText))),
		"gateway":     buildGateway(t, gw),
	}
	for name, out := range outs {
		if err := validateRendered(out); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		_, ls := parseListeners(t, out.Listeners)
		var filters int
		for _, l := range ls {
			hcms, tcps := chainFilters(t, l)
			for _, hcm := range hcms {
				stdoutFormat(t, hcm.AccessLog)
			}
			for _, tp := range tcps {
				stdoutFormat(t, tp.AccessLog)
			}
			filters += len(hcms) + len(tcps)
		}
		if name != "gateway" && filters < len(ls)+1 {
			t.Errorf("%s: %d logged filters over %d listeners; the Permissive plaintext chain must log too", name, filters, len(ls))
		}
		for _, status := range parseBootstrap(t, out.Bootstrap).GetStaticResources().GetListeners() {
			hcms, _ := chainFilters(t, status)
			for _, hcm := range hcms {
				if len(hcm.AccessLog) > 0 || hcm.Tracing != nil {
					t.Errorf("%s: the status listener logs or traces", name)
				}
			}
		}
	}
}

// tracerOf checks hcm's tracer is OpenTelemetry over gRPC to the collector's
// cluster and returns its config and sampling.
func tracerOf(t *testing.T, hcm *hcmv3.HttpConnectionManager) (*tracev3.OpenTelemetryConfig, float64) {
	t.Helper()
	tr := hcm.GetTracing()
	if tr.GetProvider().GetName() != otelTracerName {
		t.Fatalf("HCM %q: tracer %v, want %s", hcm.StatPrefix, tr.GetProvider(), otelTracerName)
	}
	cfg := &tracev3.OpenTelemetryConfig{}
	if err := tr.GetProvider().GetTypedConfig().UnmarshalTo(cfg); err != nil {
		t.Fatal(err)
	}
	if got := cfg.GetGrpcService().GetEnvoyGrpc().GetClusterName(); got != CollectorClusterName {
		t.Errorf("HCM %q: tracer exports to cluster %q, want %q", hcm.StatPrefix, got, CollectorClusterName)
	}
	if tr.GetClientSampling() != nil || tr.GetOverallSampling() != nil {
		t.Errorf("HCM %q: client or overall sampling set; only random_sampling is ours", hcm.StatPrefix)
	}
	return cfg, tr.GetRandomSampling().GetValue()
}

// TestTracingSidecar: the inbound and egress HCMs trace as the service, at the
// mesh's percentage, with server and client spans, to an otel-collector
// cluster resolved with the cluster domain.
func TestTracingSidecar(t *testing.T) {
	svc := withObservability(seedServiceA(), tracingOf(25))
	res, err := BuildSidecar(svc, Options{ClusterDomain: "corp.example"})
	if err != nil {
		t.Fatal(err)
	}
	out := mustRender(t, res)
	if err := validateRendered(out); err != nil {
		t.Fatal(err)
	}
	_, ls := parseListeners(t, out.Listeners)
	for _, l := range ls {
		cfg, pct := tracerOf(t, hcmOf(t, l))
		if cfg.ServiceName != "service-a" || pct != 25 {
			t.Errorf("listener %q: service %q sampling %v, want service-a at 25", l.Name, cfg.ServiceName, pct)
		}
		want := corev3.TrafficDirection_OUTBOUND
		if l.Name == inboundListenerName {
			want = corev3.TrafficDirection_INBOUND
		}
		if l.TrafficDirection != want {
			t.Errorf("listener %q: traffic_direction %v, want %v", l.Name, l.TrafficDirection, want)
		}
	}
	_, cs := parseClusters(t, out.Clusters)
	checkCollectorCluster(t, clusterNamed(t, cs, CollectorClusterName), "otel.observability.svc.corp.example", 4317)
}

func checkCollectorCluster(t *testing.T, c *clusterv3.Cluster, host string, port uint32) {
	t.Helper()
	if h, p := endpointOf(t, c); h != host || p != port {
		t.Errorf("collector at %s:%d, want %s:%d", h, p, host, port)
	}
	if c.GetType() != clusterv3.Cluster_STRICT_DNS || !http2Enabled(t, c) || c.TransportSocket != nil {
		t.Errorf("collector cluster: type %v, HTTP/2 %v, transport socket %v; want STRICT_DNS, HTTP/2, plaintext",
			c.GetType(), http2Enabled(t, c), c.TransportSocket)
	}
}

// TestTracingTCP: a TCP listener has nothing to trace; a TCP-only sidecar gets
// no collector cluster, one with an HTTP upstream traces its egress.
func TestTracingTCP(t *testing.T) {
	onlyTCP := tcpCaller()
	onlyTCP.Upstreams = onlyTCP.Upstreams[:1]
	out := build(t, withObservability(onlyTCP, tracingOf(1)))
	_, cs := parseClusters(t, out.Clusters)
	if slices.Contains(clusterNames(cs), CollectorClusterName) {
		t.Errorf("a TCP-only sidecar has a collector cluster: %v", clusterNames(cs))
	}

	out = build(t, withObservability(tcpCaller(), tracingOf(1)))
	_, ls := parseListeners(t, out.Listeners)
	tracerOf(t, hcmOf(t, listenerNamed(t, ls, egressListenerName(9101))))
	if tp := tcpProxyOf(t, listenerNamed(t, ls, inboundListenerName)); tp.AccessLog != nil {
		t.Errorf("tracing alone added an access log to tcp_proxy")
	}
	_, cs = parseClusters(t, out.Clusters)
	clusterNamed(t, cs, CollectorClusterName)
}

// TestTracingGateway: the gateway traces as "<mesh>-gateway" to the collector
// in the mesh's namespace unless told otherwise.
func TestTracingGateway(t *testing.T) {
	mesh := seedGatewayMesh()
	mesh.Spec.Tracing = &v1alpha1.Tracing{Collector: v1alpha1.CollectorRef{Name: "otel"}}
	gw := GatewayFor(mesh, foundMap(seedMesh()...))
	out := buildGateway(t, gw)
	_, ls := parseListeners(t, out.Listeners)
	cfg, pct := tracerOf(t, hcmOf(t, listenerNamed(t, ls, gatewayListenerName)))
	if cfg.ServiceName != "default-gateway" || pct != DefaultSamplingPercentage {
		t.Errorf("gateway tracer: service %q sampling %v, want default-gateway at %d", cfg.ServiceName, pct, DefaultSamplingPercentage)
	}
	_, cs := parseClusters(t, out.Clusters)
	checkCollectorCluster(t, clusterNamed(t, cs, CollectorClusterName), "otel.default.svc.cluster.local", DefaultCollectorPort)
}

// TestRequestIDsPropagate: the gateway, an edge proxy, replaces any id a
// client sends with its own; sidecars never treat a request as edge
// (use_remote_address unset), so they keep the x-request-id that arrives and
// only generate one when none does. Observability changes none of this.
func TestRequestIDsPropagate(t *testing.T) {
	for _, o := range []Observability{{}, {AccessLog: &AccessLogSpec{Format: v1alpha1.AccessLogJSON}, Tracing: tracingOf(1).Tracing}} {
		gw := seedGateway()
		gw.Observability = o
		_, ls := parseListeners(t, buildGateway(t, gw).Listeners)
		edge := hcmOf(t, listenerNamed(t, ls, gatewayListenerName))
		if !edge.GetGenerateRequestId().GetValue() || !edge.GetUseRemoteAddress().GetValue() || edge.PreserveExternalRequestId {
			t.Errorf("gateway: generate_request_id %v, use_remote_address %v, preserve_external_request_id %v; want true, true, false",
				edge.GetGenerateRequestId(), edge.GetUseRemoteAddress(), edge.PreserveExternalRequestId)
		}
		_, ls = parseListeners(t, build(t, withObservability(seedServiceA(), o)).Listeners)
		for _, l := range ls {
			hcm := hcmOf(t, l)
			if hcm.GetUseRemoteAddress().GetValue() {
				t.Errorf("sidecar listener %q uses the remote address: it would replace the gateway's request ids", l.Name)
			}
			if g := hcm.GetGenerateRequestId(); g != nil && !g.GetValue() {
				t.Errorf("sidecar listener %q does not generate missing request ids", l.Name)
			}
		}
	}
}

func TestObservabilityFor(t *testing.T) {
	pct := int32(0)
	tests := []struct {
		name string
		mesh *v1alpha1.ServiceMesh
		want Observability
	}{
		{name: "nil mesh"},
		{name: "neither", mesh: observabilityMesh(nil, nil)},
		{name: "defaults", mesh: observabilityMesh(&v1alpha1.AccessLog{}, &v1alpha1.Tracing{Collector: v1alpha1.CollectorRef{Name: "otel"}}),
			want: Observability{AccessLog: &AccessLogSpec{Format: v1alpha1.AccessLogJSON},
				Tracing: &TracingSpec{CollectorName: "otel", CollectorNamespace: "shop", CollectorPort: 4317, SamplingPercentage: 1}}},
		{name: "explicit", mesh: observabilityMesh(&v1alpha1.AccessLog{Format: v1alpha1.AccessLogText},
			&v1alpha1.Tracing{Collector: v1alpha1.CollectorRef{Name: "otel", Namespace: "obs", Port: 4000}, SamplingPercentage: &pct}),
			want: Observability{AccessLog: &AccessLogSpec{Format: v1alpha1.AccessLogText},
				Tracing: &TracingSpec{CollectorName: "otel", CollectorNamespace: "obs", CollectorPort: 4000, SamplingPercentage: 0}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, ObservabilityFor(tc.mesh)); diff != "" {
				t.Errorf("ObservabilityFor (-want +got):\n%s", diff)
			}
			if tc.mesh == nil {
				return
			}
			ms := meshService("shop", "a", 8080, 15006, v1alpha1.ProtocolHTTP)
			if diff := cmp.Diff(tc.want, ServiceFor(ms, nil, tc.mesh).Observability); diff != "" {
				t.Errorf("ServiceFor (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.want, GatewayFor(tc.mesh, nil).Observability); diff != "" {
				t.Errorf("GatewayFor (-want +got):\n%s", diff)
			}
		})
	}
}

// TestObservabilityOffKeepsConfig: a mesh without accessLog and tracing builds
// the same Resources as no mesh, to the version (the goldens pin the bytes).
func TestObservabilityOffKeepsConfig(t *testing.T) {
	mss := seedMesh()
	mesh := &v1alpha1.ServiceMesh{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "default"}}
	for _, ms := range mss {
		a, err := BuildSidecar(ServiceFor(ms, foundMap(mss...), nil), Options{})
		if err != nil {
			t.Fatal(err)
		}
		b, err := BuildSidecar(ServiceFor(ms, foundMap(mss...), mesh), Options{})
		if err != nil {
			t.Fatal(err)
		}
		if a.Version != b.Version || a.BootstrapVersion != b.BootstrapVersion {
			t.Errorf("%s: a mesh without observability changed the config", ms.Name)
		}
	}
}

func TestObservabilityErrors(t *testing.T) {
	tests := []struct {
		name string
		o    Observability
		want string
	}{
		{"format", accessLogOf("XML"), `access log format "XML"`},
		{"no format", accessLogOf(""), `access log format ""`},
		{"no collector", Observability{Tracing: &TracingSpec{CollectorNamespace: "x", CollectorPort: 4317}}, "collector name and namespace"},
		{"no namespace", Observability{Tracing: &TracingSpec{CollectorName: "x", CollectorPort: 4317}}, "collector name and namespace"},
		{"port", Observability{Tracing: &TracingSpec{CollectorName: "x", CollectorNamespace: "y"}}, "port 0"},
		{"sampling", tracingOf(101), "sampling percentage 101"},
		{"negative sampling", tracingOf(-1), "sampling percentage -1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := BuildSidecar(withObservability(seedServiceA(), tc.o), Options{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("BuildSidecar: error %v, want one containing %q", err, tc.want)
			}
			gw := seedGateway()
			gw.Observability = tc.o
			_, err = BuildGateway(gw, Options{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("BuildGateway: error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestParseRenderedObservability: the files read back, every new Any included.
func TestParseRenderedObservability(t *testing.T) {
	o := Observability{AccessLog: &AccessLogSpec{Format: v1alpha1.AccessLogText}, Tracing: tracingOf(5).Tracing}
	out := build(t, withObservability(tcpCaller(), o))
	files := map[string]string{BootstrapFile: string(out.Bootstrap), ListenersFile: string(out.Listeners), ClustersFile: string(out.Clusters)}
	res, err := ParseRendered(files)
	if err != nil {
		t.Fatal(err)
	}
	if res.Version != out.ConfigVersion {
		t.Errorf("parsed version %q, want %q", res.Version, out.ConfigVersion)
	}
}
