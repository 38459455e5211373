package envoyconfig

import (
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
)

// transportSocket packs a validated transport socket config (a TLS context) under
// its extension name, for a listener's filter chain or a cluster.
func transportSocket(name string, cfg validatable) (*corev3.TransportSocket, error) {
	packed, err := pack(cfg)
	if err != nil {
		return nil, fmt.Errorf("transport socket %q: %w", name, err)
	}
	return &corev3.TransportSocket{Name: name, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: packed}}, nil
}

// filterChain runs filters over connections wrapped in socket; a nil socket is
// plaintext.
func filterChain(socket *corev3.TransportSocket, filters ...*listenerv3.Filter) *listenerv3.FilterChain {
	return &listenerv3.FilterChain{Filters: filters, TransportSocket: socket}
}
