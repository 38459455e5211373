package envoyconfig

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"go.yaml.in/yaml/v2"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// marshalOptions keep Envoy's own field names, so the files read like Envoy's docs.
var marshalOptions = protojson.MarshalOptions{UseProtoNames: true}

// render turns validated protos into the three files and their hashes.
func render(boot *bootstrapv3.Bootstrap, listeners []*listenerv3.Listener, clusters []*clusterv3.Cluster) (*Output, error) {
	bootYAML, err := toYAML(boot)
	if err != nil {
		return nil, fmt.Errorf("render bootstrap: %w", err)
	}
	lds, err := discoveryResponse(listeners)
	if err != nil {
		return nil, fmt.Errorf("render listeners: %w", err)
	}
	cds, err := discoveryResponse(clusters)
	if err != nil {
		return nil, fmt.Errorf("render clusters: %w", err)
	}

	// The version is a hash of the resources alone, so it has to be computed
	// before it is written into the files. version_info sorts after every other
	// field of a DiscoveryResponse, so writing it is appending its line.
	unversionedLDS, err := toYAML(lds)
	if err != nil {
		return nil, fmt.Errorf("render listeners: %w", err)
	}
	unversionedCDS, err := toYAML(cds)
	if err != nil {
		return nil, fmt.Errorf("render clusters: %w", err)
	}
	version := shortHash(unversionedLDS, []byte{0}, unversionedCDS)
	versionLine, err := yaml.Marshal(map[string]string{"version_info": version})
	if err != nil {
		return nil, err
	}
	out := &Output{Bootstrap: bootYAML, ConfigVersion: version, BootstrapHash: shortHash(bootYAML)}
	out.Listeners = append(unversionedLDS, versionLine...)
	out.Clusters = append(unversionedCDS, versionLine...)
	return out, nil
}

// discoveryResponse is the shape Envoy expects in a file named by path_config_source.
func discoveryResponse[M proto.Message](resources []M) (*discoveryv3.DiscoveryResponse, error) {
	dr := &discoveryv3.DiscoveryResponse{}
	for _, r := range resources {
		a, err := anypb.New(r)
		if err != nil {
			return nil, err
		}
		dr.Resources = append(dr.Resources, a)
	}
	return dr, nil
}

// toYAML renders m with stable bytes: protojson deliberately varies its whitespace,
// so its JSON is decoded and marshalled again as YAML with sorted keys. The bytes
// are those of sigs.k8s.io/yaml.JSONToYAML (a test holds them equal), which parses
// the JSON with a YAML parser; encoding/json's decoder, keeping numbers as
// written, does the same several times faster.
func toYAML(m proto.Message) ([]byte, error) {
	j, err := marshalOptions.Marshal(m)
	if err != nil {
		return nil, err
	}
	return jsonToYAML(j)
}

func jsonToYAML(j []byte) ([]byte, error) {
	d := json.NewDecoder(bytes.NewReader(j))
	d.UseNumber()
	var tree any
	if err := d.Decode(&tree); err != nil {
		return nil, err
	}
	return yaml.Marshal(tree)
}

// shortHash is the first 16 hex digits of the SHA-256 of the parts.
func shortHash(parts ...[]byte) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write(p)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}
