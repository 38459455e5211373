package envoyconfig

import (
	"fmt"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/envoymesh/envoymesh-operator/api/v1alpha1"
)

// Addresses the sidecar binds or dials.
const (
	anyAddress      = "0.0.0.0"
	loopbackAddress = "127.0.0.1"
)

// validatable is what protoc-gen-validate generates on every Envoy message.
type validatable interface {
	proto.Message
	ValidateAll() error
}

// pack validates m and wraps it in an Any. Validation must happen here: ValidateAll
// on the enclosing message does not look inside Any fields. The encoding is
// deterministic, as Resources' versions need it to be.
func pack(m validatable) (*anypb.Any, error) {
	if err := m.ValidateAll(); err != nil {
		return nil, err
	}
	a := &anypb.Any{}
	if err := anypb.MarshalFrom(a, m, deterministic); err != nil {
		return nil, err
	}
	return a, nil
}

func socketAddress(host string, port int32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       host,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(port)},
	}}}
}

// singleEndpoint is the load assignment of a cluster with one address, which for
// STRICT_DNS is a name that may resolve to many endpoints.
func singleEndpoint(cluster, host string, port int32) *endpointv3.ClusterLoadAssignment {
	return &endpointv3.ClusterLoadAssignment{
		ClusterName: cluster,
		Endpoints: []*endpointv3.LocalityLbEndpoints{{
			LbEndpoints: []*endpointv3.LbEndpoint{{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
					Address: socketAddress(host, port),
				}},
			}},
		}},
	}
}

// duration converts an optional API duration; nil stays nil so Envoy's default applies.
func duration(d *v1alpha1.Duration, field string) (*durationpb.Duration, error) {
	if d == nil {
		return nil, nil
	}
	v, err := d.Parse()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	if v <= 0 {
		return nil, fmt.Errorf("%s: %q must be positive", field, string(*d))
	}
	return durationpb.New(v), nil
}

// requestTimeout converts traffic.timeout, where 0s is allowed and means no
// timeout (Envoy's route timeout 0).
func requestTimeout(d *v1alpha1.RequestTimeout, field string) (*durationpb.Duration, error) {
	if d == nil {
		return nil, nil
	}
	v, err := d.Parse()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	if v < 0 {
		return nil, fmt.Errorf("%s: %q must not be negative", field, string(*d))
	}
	return durationpb.New(v), nil
}

// durationOr is duration with a fallback for fields Envoy requires.
func durationOr(d *v1alpha1.Duration, field string, def time.Duration) (*durationpb.Duration, error) {
	if d == nil {
		return durationpb.New(def), nil
	}
	return duration(d, field)
}
