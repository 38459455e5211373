package envoyconfig

import (
	"math"
	"os"
	"path/filepath"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"sigs.k8s.io/yaml"
)

// TestToYAMLMatchesJSONToYAML holds toYAML to the bytes of sigs.k8s.io/yaml.JSONToYAML,
// the rendering DESIGN names, for every scalar shape protojson writes: integers of
// each width (64-bit ones are strings in protojson), doubles large and small, and
// strings YAML would read as something else unless quoted.
func TestToYAMLMatchesJSONToYAML(t *testing.T) {
	awkward, err := structpb.NewStruct(map[string]any{
		"ints":    []any{0, 1, -1, 4294967295, 1 << 53},
		"doubles": []any{0.1, -2.5, 1e21, 1e-7, 123456789.125, math.MaxFloat64, math.SmallestNonzeroFloat64},
		"strings": []any{"", "yes", "no", "on", "off", "null", "~", "true", "0x1F", "0o17", "1_000", "1e3", "1.0", ".inf", "-.nan",
			"- item", "key: value", "# comment", "  padded  ", "multi\nline", "tab\there", "quote'\"", "ünïcödé", "é\u2028", "@at", "`tick", "*alias", "&anchor", "!tag", "%pct", "{}", "[]", "18446744073709551615"},
		"nested": map[string]any{"b": map[string]any{}, "a": []any{}, "10": true, "9": false, "z": nil},
	})
	if err != nil {
		t.Fatal(err)
	}
	messages := map[string]proto.Message{
		"struct": awkward,
		"cluster": &clusterv3.Cluster{
			Name:                          "a",
			ConnectTimeout:                durationpb.New(1500000000),
			PerConnectionBufferLimitBytes: wrapperspb.UInt32(math.MaxUint32),
			CommonLbConfig: &clusterv3.Cluster_CommonLbConfig{
				HealthyPanicThreshold: nil,
			},
			OutlierDetection: &clusterv3.OutlierDetection{MaxEjectionPercent: wrapperspb.UInt32(100)},
			LbSubsetConfig:   nil,
		},
		"uint64s": &clusterv3.Cluster_RingHashLbConfig{MinimumRingSize: wrapperspb.UInt64(math.MaxUint64), MaximumRingSize: wrapperspb.UInt64(1 << 63)},
	}
	for name, m := range messages {
		t.Run(name, func(t *testing.T) {
			j, err := marshalOptions.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			assertSameAsJSONToYAML(t, name, j)
		})
	}
}

// TestToYAMLMatchesJSONToYAMLOnGoldenFiles renders the protos read back from every
// golden file both ways.
func TestToYAMLMatchesJSONToYAMLOnGoldenFiles(t *testing.T) {
	files, err := filepath.Glob("testdata/*/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files (%v)", err)
	}
	nested, err := filepath.Glob("testdata/*/*/*.yaml")
	if err != nil || len(nested) == 0 {
		t.Fatalf("no nested golden files (%v)", err)
	}
	files = append(files, nested...)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		j, err := yaml.YAMLToJSON(data)
		if err != nil {
			t.Fatal(err)
		}
		assertSameAsJSONToYAML(t, f, j)
	}
}

// assertSameAsJSONToYAML renders the JSON document j with jsonToYAML (toYAML's
// second step) and with sigs.k8s.io/yaml.JSONToYAML, and wants the same bytes.
func assertSameAsJSONToYAML(t *testing.T, name string, j []byte) {
	t.Helper()
	got, err := jsonToYAML(j)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	want, err := yaml.JSONToYAML(j)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("%s: jsonToYAML differs from JSONToYAML:\n%s\nwant:\n%s", name, got, want)
	}
}
