package envoyconfig

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
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
// contexts name.
//
// Under ADSDelivery the ConfigMap carries only what Envoy reads from files: the
// bootstrap and the SDS files, which the xDS channel's own TLS needs whether or
// not the config has an identity (res.BootstrapSecrets). lds.yaml and cds.yaml
// are not written (Listeners and Clusters stay nil, and ConfigVersion empty),
// because Envoy gets them over ADS: were they written, every config change
// would rewrite the ConfigMap for nothing. Which file is written follows the
// bootstrap: a file for each of LDS and CDS that does not come over ADS. So
// file delivery renders exactly as it did before ADS existed.
//
// Endpoints cannot be delivered as files and secrets other than the identity and
// trust have no file, so a set with them is refused rather than delivered
// without them, unless the bootstrap has an ADS server to deliver endpoints.
func Render(res *Resources) (*Output, error) {
	if len(res.Endpoints) > 0 && res.Bootstrap.GetDynamicResources().GetAdsConfig() == nil {
		return nil, fmt.Errorf("render: %d endpoints cannot be delivered as files", len(res.Endpoints))
	}
	bootYAML, err := toYAML(res.Bootstrap)
	if err != nil {
		return nil, fmt.Errorf("render bootstrap: %w", err)
	}
	out := &Output{Bootstrap: bootYAML, BootstrapHash: res.BootstrapVersion}
	if writesListeners(res.Bootstrap) {
		if out.Listeners, err = discoveryResponse(res.Listeners, res.Version); err != nil {
			return nil, fmt.Errorf("render listeners: %w", err)
		}
		out.ConfigVersion = res.Version
	}
	if writesClusters(res.Bootstrap) {
		if out.Clusters, err = discoveryResponse(res.Clusters, res.Version); err != nil {
			return nil, fmt.Errorf("render clusters: %w", err)
		}
		out.ConfigVersion = res.Version
	}
	secrets, err := withBootstrapSecrets(res.Secrets, res.BootstrapSecrets)
	if err != nil {
		return nil, err
	}
	if err := renderSecrets(out, secrets); err != nil {
		return nil, err
	}
	return out, nil
}

// writesListeners and writesClusters report whether Render writes lds.yaml and
// cds.yaml for a bootstrap: unless Envoy gets them over ADS.
func writesListeners(b *bootstrapv3.Bootstrap) bool {
	return !isADS(b.GetDynamicResources().GetLdsConfig())
}

func writesClusters(b *bootstrapv3.Bootstrap) bool {
	return !isADS(b.GetDynamicResources().GetCdsConfig())
}

// withBootstrapSecrets adds to secrets those of boot they do not name; one that
// both name must be the same secret, as it becomes one file.
func withBootstrapSecrets(secrets, boot []*tlsv3.Secret) ([]*tlsv3.Secret, error) {
	if len(boot) == 0 {
		return secrets, nil
	}
	out := slices.Clip(secrets)
	for _, b := range boot {
		i := slices.IndexFunc(secrets, func(s *tlsv3.Secret) bool { return s.GetName() == b.GetName() })
		if i < 0 {
			out = append(out, b)
			continue
		}
		if !proto.Equal(secrets[i], b) {
			return nil, fmt.Errorf("render: the bootstrap and the listeners and clusters name different secrets %q", b.GetName())
		}
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
