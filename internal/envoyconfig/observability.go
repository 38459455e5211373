package envoyconfig

import (
	"fmt"
	"strings"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tracev3 "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/envoymesh/envoymesh-operator/api/v1alpha1"
)

// Defaults of the ServiceMesh's spec.tracing, as the API documents them.
const (
	DefaultCollectorPort      = 4317
	DefaultSamplingPercentage = 1
)

const (
	stdoutAccessLogName = "envoy.access_loggers.stdout"
	otelTracerName      = "envoy.tracers.opentelemetry"

	// CollectorClusterName is the cluster the OpenTelemetry tracer exports to.
	// Other clusters are local_app or out.<name>.<namespace>, so it cannot clash.
	CollectorClusterName = "otel-collector"

	collectorConnectTimeout = time.Second
	// collectorExportTimeout bounds one export of spans to the collector.
	collectorExportTimeout = 5 * time.Second
)

// Observability is what a mesh asks of every proxy's telemetry, already
// resolved. The zero value is off, and keeps the config byte for byte as it was
// before observability.
type Observability struct {
	// AccessLog, when set, logs every request (HTTP) or connection (TCP) of
	// the inbound and egress listeners, or of the gateway's, on stdout.
	AccessLog *AccessLogSpec
	// Tracing, when set, sends spans of every HTTP listener to a collector.
	Tracing *TracingSpec
}

// AccessLogSpec is the access log's format: v1alpha1.AccessLogJSON (one object
// per line, the keys of AccessLogFields) or v1alpha1.AccessLogText (key=value
// pairs in the same order).
type AccessLogSpec struct {
	Format v1alpha1.AccessLogFormat
}

// TracingSpec names the OpenTelemetry collector's Service, its namespace
// already defaulted to the mesh's and its port to DefaultCollectorPort. The
// builder resolves its address with Options.ClusterDomain.
type TracingSpec struct {
	CollectorName, CollectorNamespace string
	CollectorPort                     int32
	// SamplingPercentage of the requests without a trace decision that start
	// a trace (0-100).
	SamplingPercentage float64
}

// ObservabilityFor resolves a ServiceMesh's spec.accessLog and spec.tracing,
// applying the API's defaults for fields a client left out; a nil mesh has
// neither.
func ObservabilityFor(mesh *v1alpha1.ServiceMesh) Observability {
	var o Observability
	if mesh == nil {
		return o
	}
	if al := mesh.Spec.AccessLog; al != nil {
		o.AccessLog = &AccessLogSpec{Format: al.Format}
		if o.AccessLog.Format == "" {
			o.AccessLog.Format = v1alpha1.AccessLogJSON
		}
	}
	if tr := mesh.Spec.Tracing; tr != nil {
		o.Tracing = &TracingSpec{
			CollectorName:      tr.Collector.Name,
			CollectorNamespace: tr.Collector.Namespace,
			CollectorPort:      tr.Collector.Port,
			SamplingPercentage: DefaultSamplingPercentage,
		}
		if o.Tracing.CollectorNamespace == "" {
			o.Tracing.CollectorNamespace = mesh.Namespace
		}
		if o.Tracing.CollectorPort == 0 {
			o.Tracing.CollectorPort = DefaultCollectorPort
		}
		if tr.SamplingPercentage != nil {
			o.Tracing.SamplingPercentage = float64(*tr.SamplingPercentage)
		}
	}
	return o
}

// checkObservability rejects what Envoy would refuse or what would leave a
// proxy exporting to nowhere.
func checkObservability(o Observability) error {
	if al := o.AccessLog; al != nil && al.Format != v1alpha1.AccessLogJSON && al.Format != v1alpha1.AccessLogText {
		return fmt.Errorf("access log format %q: want %s or %s", al.Format, v1alpha1.AccessLogJSON, v1alpha1.AccessLogText)
	}
	if tr := o.Tracing; tr != nil {
		if tr.CollectorName == "" || tr.CollectorNamespace == "" {
			return fmt.Errorf("tracing collector name and namespace must be set, got %q/%q", tr.CollectorNamespace, tr.CollectorName)
		}
		if tr.CollectorPort < 1 || tr.CollectorPort > 65535 {
			return fmt.Errorf("tracing collector port %d is not a valid port", tr.CollectorPort)
		}
		if tr.SamplingPercentage < 0 || tr.SamplingPercentage > 100 {
			return fmt.Errorf("tracing sampling percentage %v is not within 0-100", tr.SamplingPercentage)
		}
	}
	return nil
}

// AccessLogField is one field of the access log: its key and the Envoy command
// operator that fills it.
type AccessLogField struct{ Key, Operator string }

// AccessLogFields are the fields of an HTTP listener's access log, in the order
// of the Text format. The path is the one the caller sent, before any rewrite;
// the peer's URI SAN is the caller's SPIFFE ID under mTLS, and empty (Envoy's
// placeholder for a missing value) otherwise.
var AccessLogFields = []AccessLogField{
	{"start_time", "%START_TIME%"},
	{"request_id", "%REQ(X-REQUEST-ID)%"},
	{"method", "%REQ(:METHOD)%"},
	{"path", "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"},
	{"protocol", "%PROTOCOL%"},
	{"response_code", "%RESPONSE_CODE%"},
	{"response_flags", "%RESPONSE_FLAGS%"},
	{"upstream_cluster", "%UPSTREAM_CLUSTER%"},
	{"upstream_host", "%UPSTREAM_HOST%"},
	{"duration_ms", "%DURATION%"},
	{"response_duration_ms", "%RESPONSE_DURATION%"},
	{"bytes_received", "%BYTES_RECEIVED%"},
	{"bytes_sent", "%BYTES_SENT%"},
	{"downstream_remote_address", "%DOWNSTREAM_REMOTE_ADDRESS%"},
	{"downstream_peer_uri_san", "%DOWNSTREAM_PEER_URI_SAN%"},
}

// tcpAccessLogKeys are the keys of AccessLogFields a TCP listener logs, one
// line per connection: the others are about HTTP requests, which a TCP
// listener never sees.
var tcpAccessLogKeys = map[string]bool{
	"start_time": true, "response_flags": true, "upstream_cluster": true, "upstream_host": true,
	"duration_ms": true, "bytes_received": true, "bytes_sent": true,
	"downstream_remote_address": true, "downstream_peer_uri_san": true,
}

// TCPAccessLogFields are the fields of a TCP listener's access log.
func TCPAccessLogFields() []AccessLogField {
	var out []AccessLogField
	for _, f := range AccessLogFields {
		if tcpAccessLogKeys[f.Key] {
			out = append(out, f)
		}
	}
	return out
}

// telemetry is Observability made Envoy config, once per build, for every
// listener of one proxy to share; nil adds nothing. Nothing may modify it.
type telemetry struct {
	httpLog, tcpLog []*accesslogv3.AccessLog
	tracing         *hcmv3.HttpConnectionManager_Tracing
}

// telemetryFor builds the access logs and the tracer of o; serviceName is the
// proxy's name in its spans.
func telemetryFor(o Observability, serviceName string) (*telemetry, error) {
	if o.AccessLog == nil && o.Tracing == nil {
		return nil, nil
	}
	t := &telemetry{}
	var err error
	if o.AccessLog != nil {
		if t.httpLog, err = stdoutAccessLog(o.AccessLog.Format, AccessLogFields); err != nil {
			return nil, err
		}
		if t.tcpLog, err = stdoutAccessLog(o.AccessLog.Format, TCPAccessLogFields()); err != nil {
			return nil, err
		}
	}
	if o.Tracing != nil {
		if t.tracing, err = otelTracing(serviceName, o.Tracing.SamplingPercentage); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// http adds the access log and the tracer to an HTTP listener's HCM.
func (t *telemetry) http(hcm *hcmv3.HttpConnectionManager) {
	if t != nil {
		hcm.AccessLog = t.httpLog
		hcm.Tracing = t.tracing
	}
}

// traces reports whether HTTP listeners send spans.
func (t *telemetry) traces() bool { return t != nil && t.tracing != nil }

// tcp is the access log of a TCP listener.
func (t *telemetry) tcp() []*accesslogv3.AccessLog {
	if t == nil {
		return nil
	}
	return t.tcpLog
}

// direction tags a listener with its traffic direction when it traces, so its
// spans have the right kind: the inbound listener's are server spans, an
// egress listener's client spans. Without tracing it changes nothing.
func (t *telemetry) direction(l *listenerv3.Listener, d corev3.TrafficDirection) *listenerv3.Listener {
	if t.traces() {
		l.TrafficDirection = d
	}
	return l
}

// stdoutAccessLog writes fields in format to the proxy's stdout.
func stdoutAccessLog(format v1alpha1.AccessLogFormat, fields []AccessLogField) ([]*accesslogv3.AccessLog, error) {
	sfs, err := logFormat(format, fields)
	if err != nil {
		return nil, err
	}
	packed, err := pack(&streamv3.StdoutAccessLog{
		AccessLogFormat: &streamv3.StdoutAccessLog_LogFormat{LogFormat: sfs},
	})
	if err != nil {
		return nil, fmt.Errorf("access log %q: %w", stdoutAccessLogName, err)
	}
	return []*accesslogv3.AccessLog{{
		Name:       stdoutAccessLogName,
		ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: packed},
	}}, nil
}

// logFormat is JSON, an object of the fields (Envoy ends each with a newline),
// or Text, key=value pairs in order and a newline, where Envoy writes "-" for
// a value it does not have.
func logFormat(format v1alpha1.AccessLogFormat, fields []AccessLogField) (*corev3.SubstitutionFormatString, error) {
	switch format {
	case v1alpha1.AccessLogJSON:
		obj := make(map[string]any, len(fields))
		for _, f := range fields {
			obj[f.Key] = f.Operator
		}
		s, err := structpb.NewStruct(obj)
		if err != nil {
			return nil, err
		}
		return &corev3.SubstitutionFormatString{Format: &corev3.SubstitutionFormatString_JsonFormat{JsonFormat: s}}, nil
	case v1alpha1.AccessLogText:
		pairs := make([]string, 0, len(fields))
		for _, f := range fields {
			pairs = append(pairs, f.Key+"="+f.Operator)
		}
		text := strings.Join(pairs, " ") + "\n"
		return &corev3.SubstitutionFormatString{Format: &corev3.SubstitutionFormatString_TextFormatSource{
			TextFormatSource: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: text}},
		}}, nil
	}
	return nil, fmt.Errorf("access log format %q: want %s or %s", format, v1alpha1.AccessLogJSON, v1alpha1.AccessLogText)
}

// otelTracing sends spans over gRPC to CollectorClusterName as serviceName.
// random_sampling only decides for requests that arrive without a decision:
// one that carries a sampled traceparent from an earlier hop is traced, so a
// trace the gateway starts is followed through every sidecar.
func otelTracing(serviceName string, percentage float64) (*hcmv3.HttpConnectionManager_Tracing, error) {
	packed, err := pack(&tracev3.OpenTelemetryConfig{
		GrpcService: &corev3.GrpcService{
			TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: CollectorClusterName}},
			Timeout:         durationpb.New(collectorExportTimeout),
		},
		ServiceName: serviceName,
	})
	if err != nil {
		return nil, fmt.Errorf("tracer %q: %w", otelTracerName, err)
	}
	tr := &hcmv3.HttpConnectionManager_Tracing{
		RandomSampling: &typev3.Percent{Value: percentage},
		Provider:       &tracev3.Tracing_Http{Name: otelTracerName, ConfigType: &tracev3.Tracing_Http_TypedConfig{TypedConfig: packed}},
	}
	if err := tr.ValidateAll(); err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	return tr, nil
}

// collectorCluster reaches the collector's Service by DNS, over HTTP/2 as
// OTLP/gRPC needs, in plaintext: the collector is not a mesh member.
func collectorCluster(tr *TracingSpec, clusterDomain string) (*clusterv3.Cluster, error) {
	host := fmt.Sprintf("%s.%s.svc.%s", tr.CollectorName, tr.CollectorNamespace, clusterDomain)
	opts, err := http2ProtocolOptions()
	if err != nil {
		return nil, fmt.Errorf("cluster %q: %w", CollectorClusterName, err)
	}
	return validCluster(&clusterv3.Cluster{
		Name:                          CollectorClusterName,
		ClusterDiscoveryType:          &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS},
		ConnectTimeout:                durationpb.New(collectorConnectTimeout),
		LoadAssignment:                singleEndpoint(CollectorClusterName, host, tr.CollectorPort),
		DnsRefreshRate:                durationpb.New(dnsRefreshRate),
		RespectDnsTtl:                 true,
		DnsLookupFamily:               clusterv3.Cluster_V4_PREFERRED,
		TypedExtensionProtocolOptions: opts,
	})
}

// collectorClusters is the collector's cluster when the proxy traces and has an
// HTTP listener to trace: a TCP-only sidecar has no spans to send.
func collectorClusters(t *telemetry, o Observability, listeners []*listenerv3.Listener, clusterDomain string) ([]*clusterv3.Cluster, error) {
	if !t.traces() || !hasHTTPListener(listeners) {
		return nil, nil
	}
	c, err := collectorCluster(o.Tracing, clusterDomain)
	if err != nil {
		return nil, err
	}
	return []*clusterv3.Cluster{c}, nil
}

func hasHTTPListener(listeners []*listenerv3.Listener) bool {
	for _, l := range listeners {
		chains := append([]*listenerv3.FilterChain{l.GetDefaultFilterChain()}, l.GetFilterChains()...)
		for _, fc := range chains {
			for _, f := range fc.GetFilters() {
				if f.GetName() == hcmFilterName {
					return true
				}
			}
		}
	}
	return false
}
