package envoyconfig

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"go.yaml.in/yaml/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/envoymesh/envoymesh-operator/api/v1alpha1"
)

// slowYAML is the rendering fastYAML reproduces; toYAML falls back to it.
var slowYAML = protojsonYAML

// assertFastYAML wants fastYAML(m) to give slowYAML(m)'s bytes, or both to
// fail. fastYAML may fail alone only when allowFallback is set, and only for
// one of the known reasons.
func assertFastYAML(t testing.TB, name string, m proto.Message, allowFallback bool) []byte {
	t.Helper()
	want, wantErr := slowYAML(m)
	got, err := fastYAML(m)
	switch {
	case wantErr != nil && err == nil:
		t.Fatalf("%s: protojson fails (%v) but fastYAML renders:\n%s", name, wantErr, got)
	case wantErr != nil:
		return nil
	case err != nil:
		if !allowFallback || !knownFallback(err) {
			t.Fatalf("%s: fastYAML: %v", name, err)
		}
		return want
	case !bytes.Equal(got, want):
		t.Fatalf("%s: fastYAML differs from protojson+yaml.v2\n%s", name, lineDiff(string(want), string(got)))
	}
	return got
}

// knownFallback tells whether err is one of the cases fastYAML leaves to toYAML
// although toYAML succeeds: keys yaml.v2 writes as complex keys, or orders
// differently from run to run, and literal blocks after which yaml.v2 writes
// the next key on the same line.
func knownFallback(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "is not a simple key") || strings.Contains(msg, "consistently") || strings.Contains(msg, "does not end its line") || strings.Contains(msg, "too wide")
}

func lineDiff(want, got string) string {
	wl, gl := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(wl) || i < len(gl); i++ {
		var w, g string
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if w != g {
			from := max(0, i-3)
			return fmt.Sprintf("first difference at line %d:\nwant: %q\ngot:  %q\ncontext (want):\n%s", i+1, w, g,
				strings.Join(wl[from:min(len(wl), i+3)], "\n"))
		}
	}
	return "same lines"
}

// TestFastYAMLGoldenFiles reads every golden file back into its proto: fastYAML
// must render it as protojson+yaml.v2 does, and that is the file itself.
func TestFastYAMLGoldenFiles(t *testing.T) {
	files, err := filepath.Glob("testdata/*/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	more, err := filepath.Glob("testdata/*/*/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, more...)
	// 6 directories of 3 files before identities; under security/, one lds.yaml
	// per mode and 5 files each for the egress caller and the gateway; under
	// observability/, lds.yaml per case and cds.yaml per case that traces;
	// under xds/, 6 files each for service-a and the gateway.
	want := 18 + len(securityGoldenCases) + 2*5 + 2*6
	for _, tc := range observabilityGoldenCases {
		want++
		if tc.obs.Tracing != nil {
			want++
		}
	}
	if len(files) != want {
		t.Fatalf("found %d golden files, want %d: %v", len(files), want, files)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var m proto.Message = &discoveryv3.DiscoveryResponse{}
		if filepath.Base(f) == BootstrapFile {
			m = &bootstrapv3.Bootstrap{}
		}
		if err := readYAML(data, m); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		got := assertFastYAML(t, f, m, false)
		if !bytes.Equal(got, data) {
			t.Errorf("%s: fastYAML of the file's proto is not the file\n%s", f, lineDiff(string(data), string(got)))
		}
	}
}

// builtProtos turns what BuildSidecar or BuildGateway return into the three
// messages rendered from it: the bootstrap and the listeners' and clusters'
// DiscoveryResponses. It takes either shape the builders have had: rendered
// files (read back, as Envoy would) or the protos themselves.
func builtProtos(t testing.TB, built any) []proto.Message {
	t.Helper()
	v := reflect.ValueOf(built).Elem()
	var out []proto.Message
	switch boot := v.FieldByName("Bootstrap").Interface().(type) {
	case proto.Message:
		out = append(out, boot)
		version := ""
		if f := v.FieldByName("Version"); f.IsValid() {
			version = f.String()
		}
		for _, name := range []string{"Listeners", "Clusters"} {
			dr := &discoveryv3.DiscoveryResponse{VersionInfo: version}
			list := v.FieldByName(name)
			for i := range list.Len() {
				a, err := anypb.New(list.Index(i).Interface().(proto.Message))
				if err != nil {
					t.Fatal(err)
				}
				dr.Resources = append(dr.Resources, a)
			}
			out = append(out, dr)
		}
	case []byte:
		files := [][]byte{boot, v.FieldByName("Listeners").Bytes(), v.FieldByName("Clusters").Bytes()}
		out = []proto.Message{&bootstrapv3.Bootstrap{}, &discoveryv3.DiscoveryResponse{}, &discoveryv3.DiscoveryResponse{}}
		for i, data := range files {
			if err := readYAML(data, out[i]); err != nil {
				t.Fatal(err)
			}
		}
	default:
		t.Fatalf("unexpected build result %T", built)
	}
	return out
}

// TestFastYAMLBuilds renders the protos of the golden meshes, the gateway and
// every FuzzBuildSidecar seed both ways.
func TestFastYAMLBuilds(t *testing.T) {
	var svcs []Service
	mss := seedMesh()
	for _, ms := range mss {
		svcs = append(svcs, ServiceFor(ms, foundMap(mss...), nil))
	}
	caller, found, mesh := featureMesh()
	svcs = append(svcs, ServiceFor(caller, found, mesh))
	for i, svc := range svcs {
		built, err := BuildSidecar(svc, Options{ClusterDomain: "cluster.local"})
		if err != nil {
			t.Fatal(err)
		}
		for j, m := range builtProtos(t, built) {
			assertFastYAML(t, fmt.Sprintf("service %d file %d", i, j), m, false)
		}
	}
	gw, err := BuildGateway(GatewayFor(seedGatewayMesh(), foundMap(seedMesh()...)), Options{ClusterDomain: "cluster.local"})
	if err != nil {
		t.Fatal(err)
	}
	for j, m := range builtProtos(t, gw) {
		assertFastYAML(t, fmt.Sprintf("gateway file %d", j), m, false)
	}

	seeds, err := filepath.Glob("testdata/fuzz/FuzzBuildSidecar/*")
	if err != nil || len(seeds) == 0 {
		t.Fatalf("no FuzzBuildSidecar seeds (%v)", err)
	}
	n := 0
	for _, f := range seeds {
		in := &fuzzInput{data: readFuzzBytes(t, f)}
		caller, found, mesh, _ := in.mesh()
		built, err := BuildSidecar(ServiceFor(caller, found, mesh), Options{})
		if err != nil {
			continue
		}
		n++
		for j, m := range builtProtos(t, built) {
			assertFastYAML(t, fmt.Sprintf("%s file %d", f, j), m, false)
		}
	}
	if n == 0 {
		t.Fatal("no FuzzBuildSidecar seed builds")
	}
}

// readFuzzBytes reads a "go test fuzz v1" file holding one []byte.
func readFuzzBytes(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 2 || lines[0] != "go test fuzz v1" {
		t.Fatalf("%s: not a one-value fuzz file", path)
	}
	v := strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")")
	s, err := strconv.Unquote(v)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return []byte(s)
}

// awkwardStrings are strings YAML treats specially in one way or another.
var awkwardStrings = []string{
	"", " ", "  ", "a", "yes", "Yes", "no", "NO", "on", "off", "y", "n", "Y", "true", "False", "null", "Null", "~", "<<",
	"0", "1", "-1", "+1", "007", "0x1F", "0o17", "0b101", "-0b101", "1_000", "1e3", "1.0", ".5", "1.", "+.5", ".inf", "-.INF", ".nan", "NaN", "Infinity", "-Infinity",
	"1:20", "-1:20:30.5", "190:20:30", "1:70", "2001-12-14", "2001-12-14t21:59:43.10-05:00", "2001-12-14 21:59:43.10", "2001-12-14T21:59:43,5Z", "2001-1-2", "2001-13-40",
	"10.0.0.1", "0.0.0.0", "127.0.0.1:8080", "::1", "[::]", "1.500s", "0s", "9223372036854775808", "18446744073709551616", "-9223372036854775809",
	"- item", "-item", "-", "--", "---", "--- a", "...", "....a", "? x", "?x", ":x", ": x", "x:", "x: y", "x:y", "http://a/b", "a #b", "a#b", "#b",
	"@type", "`tick", "*alias", "&anchor", "!tag", "%pct", "|", ">", "'", "\"", "'quoted'", "\"dq\"", "it's", "say \"hi\"", `back\slash`, `C:\dir\`,
	"{}", "[]", "{a: 1}", "[a, b]", "a,b", "a, b", "a]", "a}", "a{", "x?", "* ", "leading space", " leading", "trailing ", " both ", "two  spaces",
	"multi\nline", "trailing newline\n", "\nleading newline", "two\n\nbreaks", "ends\n\n", "\n", "\n\n", "line \nspace before break", "line\n space after break",
	"tab\there", "cr\rhere", "crlf\r\nhere", "nul\x00here", "bell\x07", "del\x7f", "ünïcödé", "é\u2028", "nel\u0085", "nbsp\u00a0x", "bom\ufeffx", "emoji 😀", "\U0001F600",
	"a " + strings.Repeat("b", 100), strings.Repeat("word ", 30), strings.Repeat("x", 150), strings.Repeat("ab ", 40) + "end",
	strings.Repeat("it's ", 25), strings.Repeat("say \"x\" ", 15), strings.Repeat("1 ", 50), "yes " + strings.Repeat("w ", 50),
	strings.Repeat("long line ", 12) + "\n" + strings.Repeat("second ", 15), strings.Repeat("é ", 60), strings.Repeat("a  ", 40), " " + strings.Repeat("lead ", 20),
	strings.Repeat("x", 78) + " y z", strings.Repeat("x", 79) + " y", strings.Repeat("x", 80) + " y", strings.Repeat("x", 81) + " y", strings.Repeat("x", 76) + "  y z",
}

func TestFastYAMLAwkwardStrings(t *testing.T) {
	// Each string as a value and a key at several depths, in mappings and in
	// sequences, so it starts at many columns.
	var values []any
	keys, digitless := map[string]any{}, map[string]any{}
	for i, s := range awkwardStrings {
		values = append(values, s)
		keys[s] = i
		if !strings.ContainsAny(s, "0123456789\n\r\u0085\u2028\u2029") && len(s) <= 128 {
			digitless[s] = i
		}
	}
	deep := map[string]any{"strings": values, "k": map[string]any{"strings": values, "kk": []any{values, map[string]any{"x": values}}}}
	for _, s := range awkwardStrings {
		deep["v_"+strconv.Itoa(len(deep))] = s
	}
	for _, doc := range []map[string]any{deep, digitless, {"a": map[string]any{"b": map[string]any{"c": digitless}}}} {
		st, err := structpb.NewStruct(doc)
		if err != nil {
			t.Fatal(err)
		}
		assertFastYAML(t, "struct", st, false)
	}
	// yaml.v2's order of these keys is not transitive, so its output varies from
	// run to run with Go's map order: fastYAML must leave them to it.
	st, err := structpb.NewStruct(keys)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fastYAML(st); err == nil || !strings.Contains(err.Error(), "consistently") {
		t.Errorf("fastYAML on keys yaml.v2 cannot order: %v, want the ordering error", err)
	}
	// Strings inside Envoy protos, under typed keys of all widths.
	for _, s := range awkwardStrings {
		c := &clusterv3.Cluster{
			Name:        s,
			AltStatName: s,
			Metadata:    &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{s: {Fields: map[string]*structpb.Value{"v": structpb.NewStringValue(s)}}}},
		}
		assertFastYAML(t, fmt.Sprintf("cluster %q", s), c, true)
	}
}

func TestFastYAMLAwkwardMessages(t *testing.T) {
	toAny := func(m proto.Message) *anypb.Any {
		a, err := anypb.New(m)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	st, err := structpb.NewStruct(map[string]any{
		"ints":    []any{0, 1, -1, 4294967295, 1 << 53, -(1 << 60)},
		"doubles": []any{0.1, -2.5, 1e21, 1e20, 1e-7, 1e-6, 123456789.125, 0.000001234, math.MaxFloat64, math.SmallestNonzeroFloat64, -0.0, 100, 1.5e300},
		"nested":  map[string]any{"b": map[string]any{}, "a": []any{}, "10": true, "9": false, "z": nil, "": "empty key", " ": "space key"},
		"lists":   []any{[]any{}, []any{[]any{1, []any{"x"}}}, map[string]any{}, nil, true},
	})
	if err != nil {
		t.Fatal(err)
	}
	route := &routev3.RouteConfiguration{Name: "r", VirtualHosts: []*routev3.VirtualHost{{
		Name: "vh", Domains: []string{"*", "a.b", "*.example.com"},
		Routes: []*routev3.Route{{
			Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: nil}, CaseSensitive: wrapperspb.Bool(false)},
			Action: directResponse(200, "multi\nline body\n"),
			Metadata: &corev3.Metadata{TypedFilterMetadata: map[string]*anypb.Any{
				"dur":   toAny(durationpb.New(1500 * time.Millisecond)),
				"empty": toAny(&emptypb.Empty{}),
				"float": toAny(wrapperspb.Float(0.1)),
				"u64":   toAny(wrapperspb.UInt64(math.MaxUint64)),
				"i64":   toAny(wrapperspb.Int64(math.MinInt64)),
				"bytes": toAny(wrapperspb.Bytes([]byte("\x00\xffhello"))),
				"str":   toAny(wrapperspb.String("yes")),
				"ts":    toAny(timestamppb.New(time.Date(2024, 2, 29, 12, 0, 0, 120000000, time.UTC))),
				"fm":    toAny(&fieldmaskpb.FieldMask{Paths: []string{"a.b_c", "d"}}),
				"value": toAny(structpb.NewNullValue()),
				"list":  toAny(&structpb.ListValue{}),
				"any":   toAny(toAny(toAny(st))),
				"st":    toAny(st),
			}},
		}},
	}}}
	durations := []*durationpb.Duration{{}, {Nanos: 1}, {Nanos: 1000}, {Nanos: 1000000}, {Seconds: -1, Nanos: -500000000}, {Nanos: -5}, {Seconds: 315576000000}, {Seconds: 1, Nanos: 123456789}}
	var durs []*anypb.Any
	for _, d := range durations {
		durs = append(durs, toAny(d))
	}
	messages := map[string]proto.Message{
		"struct": st,
		"route":  route,
		"durations": &corev3.Metadata{TypedFilterMetadata: map[string]*anypb.Any{
			"a": toAny(&structpb.ListValue{Values: []*structpb.Value{structpb.NewListValue(&structpb.ListValue{})}}),
		}},
		"durationlist": &discoveryv3.DiscoveryResponse{Resources: durs, Nonce: "n", TypeUrl: "x"},
		"cluster": &clusterv3.Cluster{
			Name:                          "a",
			ConnectTimeout:                durationpb.New(1500000000),
			PerConnectionBufferLimitBytes: wrapperspb.UInt32(math.MaxUint32),
			CommonLbConfig:                &clusterv3.Cluster_CommonLbConfig{},
			OutlierDetection:              &clusterv3.OutlierDetection{MaxEjectionPercent: wrapperspb.UInt32(0)},
			LbPolicy:                      clusterv3.Cluster_LbPolicy(77),
			DnsLookupFamily:               clusterv3.Cluster_V4_ONLY,
			ClusterDiscoveryType:          &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		},
		"uint64s":        &clusterv3.Cluster_RingHashLbConfig{MinimumRingSize: wrapperspb.UInt64(math.MaxUint64), MaximumRingSize: wrapperspb.UInt64(1 << 63)},
		"empty":          &clusterv3.Cluster{},
		"nil":            (*clusterv3.Cluster)(nil),
		"bad duration":   &clusterv3.Cluster{ConnectTimeout: &durationpb.Duration{Seconds: 1, Nanos: -1}},
		"bad any":        &clusterv3.Cluster{TypedExtensionProtocolOptions: map[string]*anypb.Any{"x": {TypeUrl: "type.googleapis.com/no.such.Type"}}},
		"value only any": &clusterv3.Cluster{TypedExtensionProtocolOptions: map[string]*anypb.Any{"x": {Value: []byte{1}}}},
		"empty any":      &clusterv3.Cluster{TypedExtensionProtocolOptions: map[string]*anypb.Any{"x": {}}},
		"bad utf8":       &clusterv3.Cluster{Name: "a\xffb"},
		"bad value":      &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"x": {Fields: map[string]*structpb.Value{"n": {}}}}},
		"nan value":      &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"x": {Fields: map[string]*structpb.Value{"n": structpb.NewNumberValue(math.NaN())}}}},
	}
	for name, m := range messages {
		assertFastYAML(t, name, m, false)
	}
	for i, m := range kitchenSinks() {
		assertFastYAML(t, fmt.Sprintf("kitchen sink %d", i), m, true)
	}
	if _, err := fastYAML(durationpb.New(time.Second)); err == nil {
		t.Error("fastYAML renders a root that is not a mapping")
	}
}

// sinkDesc is a proto3 message with a field of every kind, maps with every key
// kind and recursion, for what Envoy's protos lack.
var sinkDesc = func() protoreflect.MessageDescriptor {
	str := func(s string) *string { return &s }
	i32 := func(i int32) *int32 { return &i }
	T := descriptorpb.FieldDescriptorProto_Type_value
	opt := descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum()
	rep := descriptorpb.FieldDescriptorProto_LABEL_REPEATED.Enum()
	field := func(name string, n int32, typ string, label *descriptorpb.FieldDescriptorProto_Label, typeName string) *descriptorpb.FieldDescriptorProto {
		f := &descriptorpb.FieldDescriptorProto{Name: str(name), Number: i32(n), Label: label, Type: descriptorpb.FieldDescriptorProto_Type(T[typ]).Enum()}
		if typeName != "" {
			f.TypeName = str(typeName)
		}
		return f
	}
	entry := func(name, keyType string, valType string, valTypeName string) *descriptorpb.DescriptorProto {
		return &descriptorpb.DescriptorProto{
			Name:    str(name),
			Field:   []*descriptorpb.FieldDescriptorProto{field("key", 1, keyType, opt, ""), field("value", 2, valType, opt, valTypeName)},
			Options: &descriptorpb.MessageOptions{MapEntry: proto.Bool(true)},
		}
	}
	optional := field("opt_int", 30, "TYPE_INT32", opt, "")
	optional.Proto3Optional = proto.Bool(true)
	optional.OneofIndex = i32(1)
	oneofA := field("one_str", 31, "TYPE_STRING", opt, "")
	oneofA.OneofIndex = i32(0)
	oneofB := field("one_sink", 32, "TYPE_MESSAGE", opt, ".fastyaml.Sink")
	oneofB.OneofIndex = i32(0)
	fd := &descriptorpb.FileDescriptorProto{
		Name:       str("fastyaml_test.proto"),
		Package:    str("fastyaml"),
		Syntax:     str("proto3"),
		Dependency: []string{"google/protobuf/any.proto", "google/protobuf/struct.proto"},
		EnumType: []*descriptorpb.EnumDescriptorProto{{Name: str("Color"), Value: []*descriptorpb.EnumValueDescriptorProto{
			{Name: str("RED"), Number: i32(0)}, {Name: str("YES"), Number: i32(1)}, {Name: str("ON"), Number: i32(2)}, {Name: str("N"), Number: i32(3)},
		}}},
		MessageType: []*descriptorpb.DescriptorProto{{
			Name: str("Sink"),
			Field: []*descriptorpb.FieldDescriptorProto{
				field("i32", 1, "TYPE_INT32", opt, ""), field("i64", 2, "TYPE_INT64", opt, ""),
				field("u32", 3, "TYPE_UINT32", opt, ""), field("u64", 4, "TYPE_UINT64", opt, ""),
				field("s32", 5, "TYPE_SINT32", opt, ""), field("s64", 6, "TYPE_SINT64", opt, ""),
				field("f32", 7, "TYPE_FIXED32", opt, ""), field("f64", 8, "TYPE_FIXED64", opt, ""),
				field("sf32", 9, "TYPE_SFIXED32", opt, ""), field("sf64", 10, "TYPE_SFIXED64", opt, ""),
				field("flt", 11, "TYPE_FLOAT", opt, ""), field("dbl", 12, "TYPE_DOUBLE", opt, ""),
				field("b", 13, "TYPE_BOOL", opt, ""), field("s", 14, "TYPE_STRING", opt, ""),
				field("by", 15, "TYPE_BYTES", opt, ""), field("color", 16, "TYPE_ENUM", opt, ".fastyaml.Color"),
				field("child", 17, "TYPE_MESSAGE", opt, ".fastyaml.Sink"),
				field("children", 18, "TYPE_MESSAGE", rep, ".fastyaml.Sink"),
				field("strs", 19, "TYPE_STRING", rep, ""), field("dbls", 20, "TYPE_DOUBLE", rep, ""),
				field("i64s", 21, "TYPE_INT64", rep, ""), field("colors", 22, "TYPE_ENUM", rep, ".fastyaml.Color"),
				field("by_int", 23, "TYPE_MESSAGE", rep, ".fastyaml.Sink.ByIntEntry"),
				field("by_bool", 24, "TYPE_MESSAGE", rep, ".fastyaml.Sink.ByBoolEntry"),
				field("by_str", 25, "TYPE_MESSAGE", rep, ".fastyaml.Sink.ByStrEntry"),
				field("by_u64", 26, "TYPE_MESSAGE", rep, ".fastyaml.Sink.ByU64Entry"),
				field("any", 27, "TYPE_MESSAGE", opt, ".google.protobuf.Any"),
				field("value", 28, "TYPE_MESSAGE", opt, ".google.protobuf.Value"),
				field("flts", 29, "TYPE_FLOAT", rep, ""),
				optional, oneofA, oneofB,
				field("v2", 33, "TYPE_STRING", opt, ""), field("v10", 34, "TYPE_STRING", opt, ""),
				field("ON", 35, "TYPE_STRING", opt, ""), field("y", 36, "TYPE_STRING", opt, ""),
			},
			NestedType: []*descriptorpb.DescriptorProto{
				entry("ByIntEntry", "TYPE_SINT32", "TYPE_STRING", ""),
				entry("ByBoolEntry", "TYPE_BOOL", "TYPE_MESSAGE", ".fastyaml.Sink"),
				entry("ByStrEntry", "TYPE_STRING", "TYPE_MESSAGE", ".google.protobuf.Value"),
				entry("ByU64Entry", "TYPE_UINT64", "TYPE_DOUBLE", ""),
			},
			OneofDecl: []*descriptorpb.OneofDescriptorProto{{Name: str("choice")}, {Name: str("_opt_int")}},
		}},
	}
	f, err := protodesc.NewFile(fd, protoregistry.GlobalFiles)
	if err != nil {
		panic(err)
	}
	return f.Messages().Get(0)
}()

type sinkBuilder struct {
	in     *fuzzInput
	budget *int // fields left to set, so nesting cannot blow up
}

func newSinkBuilder(data []byte) sinkBuilder {
	budget := 400
	return sinkBuilder{&fuzzInput{data: data}, &budget}
}

// sink builds a Sink from the fuzz input.
func (b sinkBuilder) sink(depth int) *dynamicpb.Message {
	m := dynamicpb.NewMessage(sinkDesc)
	fields := sinkDesc.Fields()
	n := b.in.intn(12)
	for range n {
		if *b.budget <= 0 {
			break
		}
		*b.budget--
		fd := fields.Get(b.in.intn(fields.Len()))
		switch {
		case fd.IsMap():
			mp := m.Mutable(fd).Map()
			for range 1 + b.in.intn(4) {
				var k protoreflect.MapKey
				switch fd.MapKey().Kind() {
				case protoreflect.Sint32Kind:
					k = protoreflect.ValueOfInt32(int32(b.in.uint32())).MapKey()
				case protoreflect.BoolKind:
					k = protoreflect.ValueOfBool(b.in.bool()).MapKey()
				case protoreflect.Uint64Kind:
					k = protoreflect.ValueOfUint64(uint64(b.in.uint32()) << b.in.intn(40)).MapKey()
				default:
					key := b.str()
					if b.in.bool() { // most keys on one line: yaml.v2 writes others as complex keys, left to it
						key = strings.NewReplacer("\n", "", "\r", "", "\u0085", "", "\u2028", "", "\u2029", "").Replace(key)
					}
					k = protoreflect.ValueOfString(key).MapKey()
				}
				v := b.scalar(fd.MapValue(), depth)
				if v.IsValid() {
					mp.Set(k, v)
				}
			}
		case fd.IsList():
			l := m.Mutable(fd).List()
			for range 1 + b.in.intn(4) {
				if v := b.scalar(fd, depth); v.IsValid() {
					l.Append(v)
				}
			}
		default:
			if v := b.scalar(fd, depth); v.IsValid() {
				m.Set(fd, v)
			}
		}
	}
	return m
}

func (b sinkBuilder) scalar(fd protoreflect.FieldDescriptor, depth int) protoreflect.Value {
	in := b.in
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(in.bool())
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(int32(in.uint32()))
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(in.uint32())
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(int64(uint64(in.uint32())<<32 | uint64(in.uint32())))
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(uint64(in.uint32())<<32 | uint64(in.uint32()))
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(b.float32())
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(b.float64())
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(b.str())
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes([]byte(b.str()))
	case protoreflect.EnumKind:
		return protoreflect.ValueOfEnum(protoreflect.EnumNumber(in.intn(6)))
	case protoreflect.MessageKind:
		if depth > 4 {
			return protoreflect.Value{}
		}
		switch fd.Message().FullName() {
		case "google.protobuf.Any":
			a, err := anypb.New(b.wkt(depth + 1))
			if err != nil {
				panic(err)
			}
			return protoreflect.ValueOfMessage(a.ProtoReflect())
		case "google.protobuf.Value":
			return protoreflect.ValueOfMessage(b.value(depth + 1).ProtoReflect())
		}
		return protoreflect.ValueOfMessage(b.sink(depth + 1))
	}
	panic(fd.Kind())
}

func (b sinkBuilder) wkt(depth int) proto.Message {
	in := b.in
	switch in.intn(9) {
	case 0:
		return durationpb.New(time.Duration(int64(in.uint32())<<in.intn(30)) * sign(in.bool()))
	case 1:
		return timestamppb.New(time.Unix(int64(in.uint32())<<in.intn(4), int64(in.uint32()%1e9)))
	case 2:
		return wrapperspb.Double(b.float64())
	case 3:
		return wrapperspb.String(b.str())
	case 4:
		return &emptypb.Empty{}
	case 5:
		return b.value(depth)
	case 6:
		return &fieldmaskpb.FieldMask{Paths: []string{b.str()}}
	case 7:
		st := &structpb.Struct{Fields: map[string]*structpb.Value{}}
		for range in.intn(4) {
			st.Fields[b.str()] = b.value(depth + 1)
		}
		return st
	}
	return &clusterv3.Cluster{Name: b.str(), AltStatName: b.str(), ConnectTimeout: durationpb.New(time.Duration(in.uint32()))}
}

func sign(neg bool) time.Duration {
	if neg {
		return -1
	}
	return 1
}

func (b sinkBuilder) value(depth int) *structpb.Value {
	in := b.in
	k := in.intn(6)
	if depth > 5 {
		k %= 4
	}
	switch k {
	case 0:
		return structpb.NewNullValue()
	case 1:
		return structpb.NewBoolValue(in.bool())
	case 2:
		return structpb.NewNumberValue(b.float64())
	case 3:
		return structpb.NewStringValue(b.str())
	case 4:
		l := &structpb.ListValue{}
		for range in.intn(4) {
			l.Values = append(l.Values, b.value(depth+1))
		}
		return structpb.NewListValue(l)
	}
	st := &structpb.Struct{Fields: map[string]*structpb.Value{}}
	for range in.intn(4) {
		st.Fields[b.str()] = b.value(depth + 1)
	}
	return structpb.NewStructValue(st)
}

var fuzzFloats = []float64{0, 1, -1, 0.1, 0.5, 1e21, 1e20, 1e-6, 1e-7, 123456789.125, 1 << 53, 1<<63 + 1, math.MaxFloat64, math.SmallestNonzeroFloat64,
	math.Inf(1), math.Inf(-1), math.NaN(), math.Copysign(0, -1), 100, 9007199254740993, 3.4028234663852886e+38}

func (b sinkBuilder) float64() float64 {
	if b.in.bool() {
		return fuzzFloats[b.in.intn(len(fuzzFloats))]
	}
	return math.Float64frombits(uint64(b.in.uint32())<<32 | uint64(b.in.uint32()))
}

func (b sinkBuilder) float32() float32 {
	if b.in.bool() {
		return float32(fuzzFloats[b.in.intn(len(fuzzFloats))])
	}
	return math.Float32frombits(b.in.uint32())
}

// str is a fuzzed string: a piece of an awkward one, or raw bytes made valid
// UTF-8 (dynamicpb refuses anything else).
func (b sinkBuilder) str() string {
	return strings.ToValidUTF8(b.rawStr(), "\uFFFD")
}

func (b sinkBuilder) rawStr() string {
	in := b.in
	switch in.intn(4) {
	case 0:
		return awkwardStrings[in.intn(len(awkwardStrings))]
	case 1:
		n := in.intn(40)
		var s strings.Builder
		for range n {
			s.WriteByte(in.byte())
		}
		return s.String()
	case 2:
		return in.text("ab 01:-#'\"\n.y", 1+in.intn(120))
	}
	return awkwardStrings[in.intn(len(awkwardStrings))] + in.text("a .:-\n", 1+in.intn(90)) + awkwardStrings[in.intn(len(awkwardStrings))]
}

// kitchenSinks are Sinks from fixed pseudo-random inputs.
func kitchenSinks() []proto.Message {
	var out []proto.Message
	for seed := range 200 {
		data := make([]byte, 600)
		x := uint32(seed*2654435761 + 1)
		for i := range data {
			x ^= x << 13
			x ^= x >> 17
			x ^= x << 5
			data[i] = byte(x)
		}
		out = append(out, newSinkBuilder(data).sink(0))
	}
	return out
}

// FuzzFastYAML builds a message with fields of every kind, strings and numbers
// from the fuzz input, and compares the two renderers.
func FuzzFastYAML(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("\x0b\x0e\x03\x02yes: no\n\x19\x02\x01"))
	for _, s := range awkwardStrings[:20] {
		f.Add(append([]byte{5, 13, 0}, s...))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m := newSinkBuilder(data).sink(0)
		assertFastYAML(t, "sink", m, true)
	})
}

// TestFastPlain holds the scalar fast paths to yaml.v2 on the awkward strings at
// every column.
func TestFastPlain(t *testing.T) {
	for _, s := range awkwardStrings {
		for depth := range 4 {
			for _, width := range []int{1, 5, 20, 60, 79, 80, 81, 100, 128, 129, 130, 131, 132, 133, 300, 502} {
				checkScalar(t, s, depth, width, false)
			}
			checkScalar(t, s, depth, 1, true)
		}
	}
}

// FuzzFastPlain: whatever fastScalar accepts, yaml.v2 writes that way; and str
// (fast path, literal block or yaml.v2 itself) and renderKey agree with
// yaml.v2 at any column.
func FuzzFastPlain(f *testing.F) {
	for _, s := range awkwardStrings {
		f.Add(s, uint8(1), uint8(7), false)
	}
	f.Add("a b", uint8(30), uint8(70), true)
	f.Add("a  b c", uint8(2), uint8(70), false)
	f.Fuzz(func(t *testing.T, s string, depth, width uint8, item bool) {
		if !utf8ValidForYAML(s) {
			return
		}
		checkScalar(t, s, int(depth%40), 1+int(width)*2, item)
	})
}

func utf8ValidForYAML(s string) bool { return utf8.ValidString(s) }

func checkScalar(t *testing.T, s string, depth, width int, item bool) {
	t.Helper()
	if text, ok := fastScalar(s, 0); ok && text == s {
		out, err := yaml.Marshal(s)
		if err != nil || string(out) != s+"\n" {
			t.Fatalf("fastScalar writes %q plain, yaml.v2 as %q (%v)", s, out, err)
		}
	}
	c := ctx{kind: ctxValue, indent: 2 * depth, col: 2*depth + width + 1}
	if item {
		c = ctx{kind: ctxItem, indent: 2 * depth, col: 2*depth + 1}
	}
	fast, slow := &yenc{}, &yenc{}
	err := fast.str(c, s)
	err2 := slow.strByYAML(s, c)
	if err != nil && err2 != nil && err.Error() == err2.Error() && knownFallback(err) {
		return
	}
	if err != nil || err2 != nil {
		t.Fatalf("%q in %+v: str: %v, strByYAML: %v", s, c, err, err2)
	}
	if !bytes.Equal(fast.buf, slow.buf) {
		t.Fatalf("%q in %+v: str writes\n%q\nyaml.v2\n%q", s, c, fast.buf, slow.buf)
	}
	// And the spliced text is what yaml.v2 writes in a real document of that shape.
	key, _, err := renderKey(s)
	if err != nil {
		if len(s) <= 128 && !strings.ContainsAny(s, "\n\r\u0085\u2028\u2029") {
			t.Fatalf("renderKey(%q): %v", s, err)
		}
		return
	}
	out, err := yaml.Marshal(map[string]any{s: nil})
	if err != nil || string(out) != key+": null\n" {
		t.Fatalf("renderKey(%q) = %q, yaml.v2 writes %q (%v)", s, key, out, err)
	}
}

// BenchmarkYAML renders the listeners DiscoveryResponse of a sidecar with 10
// upstreams (as BenchmarkBuildSidecar builds it), and all three files, with
// protojson+yaml.v2 and with fastYAML.
func BenchmarkYAML(b *testing.B) {
	svc := Service{Name: "a", Namespace: "ns", Port: 8080, ServicePort: 15006, Protocol: v1alpha1.ProtocolHTTP}
	for i := range 10 {
		svc.Upstreams = append(svc.Upstreams, Upstream{
			Name: fmt.Sprintf("svc-%d", i), Namespace: "ns", LocalPort: int32(20000 + i),
			Target: &Target{ServicePort: 15006, Protocol: v1alpha1.ProtocolHTTP, Traffic: MergeTraffic(&v1alpha1.TrafficPolicy{
				Timeout: tmo("5s"),
				Retries: &v1alpha1.RetryPolicy{Attempts: i32(2)},
			})},
		})
	}
	built, err := BuildSidecar(svc, Options{ClusterDomain: "cluster.local"})
	if err != nil {
		b.Fatal(err)
	}
	files := builtProtos(b, built)
	for _, r := range []struct {
		name string
		fn   func(proto.Message) ([]byte, error)
	}{{"protojson", slowYAML}, {"fastYAML", fastYAML}} {
		b.Run("lds/"+r.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := r.fn(files[1]); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("all3/"+r.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				for _, m := range files {
					if _, err := r.fn(m); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
