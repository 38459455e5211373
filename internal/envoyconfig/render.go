package envoyconfig

import (
	"bytes"
	"encoding/json"
	"fmt"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"go.yaml.in/yaml/v2"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// marshalOptions keep Envoy's own field names, so the files read like Envoy's docs.
var marshalOptions = protojson.MarshalOptions{UseProtoNames: true}

// Render writes res as the ConfigMap's files: the bootstrap, listeners and
// clusters as the DiscoveryResponse files the bootstrap's FileDelivery watches,
// each with res.Version as version_info, and each secret as the SDS file its TLS
// contexts name. Files carry no endpoints and only the identity and trust
// secrets, so a set with anything else is refused rather than delivered without it.
func Render(res *Resources) (*Output, error) {
	if len(res.Endpoints) > 0 {
		return nil, fmt.Errorf("render: %d endpoints cannot be delivered as files", len(res.Endpoints))
	}
	bootYAML, err := toYAML(res.Bootstrap)
	if err != nil {
		return nil, fmt.Errorf("render bootstrap: %w", err)
	}
	lds, err := discoveryResponse(res.Listeners, res.Version)
	if err != nil {
		return nil, fmt.Errorf("render listeners: %w", err)
	}
	cds, err := discoveryResponse(res.Clusters, res.Version)
	if err != nil {
		return nil, fmt.Errorf("render clusters: %w", err)
	}
	out := &Output{Bootstrap: bootYAML, Listeners: lds, Clusters: cds, ConfigVersion: res.Version, BootstrapHash: res.BootstrapVersion}
	if err := renderSecrets(out, res.Secrets); err != nil {
		return nil, err
	}
	return out, nil
}

// renderSecrets writes each secret to its own SDS file, as Envoy reads one secret
// per file. Each file's version_info is a hash of its secret alone, so its bytes
// change only when the secret does, not with every listener change.
func renderSecrets(out *Output, secrets []*tlsv3.Secret) error {
	files := map[string]*[]byte{SDSIdentityFile: &out.SDSIdentity, SDSTrustFile: &out.SDSTrust}
	for _, s := range secrets {
		dst := files[sdsFiles[s.GetName()]]
		if dst == nil {
			return fmt.Errorf("render: secret %q has no file; only %q and %q can be delivered as files", s.GetName(), IdentitySecretName, TrustSecretName)
		}
		if *dst != nil {
			return fmt.Errorf("render: secret %q is listed twice", s.GetName())
		}
		version, err := versionOf(s)
		if err != nil {
			return err
		}
		if *dst, err = discoveryResponse([]*tlsv3.Secret{s}, version); err != nil {
			return fmt.Errorf("render secret %q: %w", s.GetName(), err)
		}
	}
	return nil
}

// discoveryResponse renders resources in the shape Envoy expects in a file named
// by path_config_source.
func discoveryResponse[M proto.Message](resources []M, version string) ([]byte, error) {
	dr := &discoveryv3.DiscoveryResponse{VersionInfo: version}
	for _, r := range resources {
		a, err := anypb.New(r)
		if err != nil {
			return nil, err
		}
		dr.Resources = append(dr.Resources, a)
	}
	return toYAML(dr)
}

// toYAML renders m with stable bytes: those of sigs.k8s.io/yaml.JSONToYAML over
// protojson's output (a test holds them equal). fastYAML writes them straight
// from the message, several times faster; what it cannot reproduce byte for byte
// it refuses, and protojsonYAML renders.
func toYAML(m proto.Message) ([]byte, error) {
	if b, err := fastYAML(m); err == nil {
		return b, nil
	}
	return protojsonYAML(m)
}

// protojsonYAML is the long way, and the reference fastYAML is tested against:
// protojson, whose whitespace is deliberately unstable, decoded by encoding/json
// with numbers kept as written (as JSONToYAML's YAML parser reads them) and
// marshalled again as YAML with sorted keys.
func protojsonYAML(m proto.Message) ([]byte, error) {
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
