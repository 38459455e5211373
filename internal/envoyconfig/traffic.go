package envoyconfig

import (
	"fmt"

	"github.com/envoymesh/envoymesh-operator/api/v1alpha1"
)

// Built-in traffic defaults, as in the seed mesh.
const (
	DefaultLoadBalancer                     = v1alpha1.LoadBalancerRoundRobin
	DefaultConnectTimeout v1alpha1.Duration = "250ms"
	// DefaultStreamTimeout is the request timeout of HTTP2 and GRPC targets: none,
	// so long gRPC streams are not cut by Envoy's 15s route default. The stream
	// idle timeout still closes a stream that goes quiet.
	DefaultStreamTimeout v1alpha1.RequestTimeout = "0s"
)

// MergeTraffic merges policies field by field, the first layer that sets a field
// winning (the caller's upstreams[].traffic, the callee's spec.traffic, the mesh's
// defaults), then applies the built-in defaults: RoundRobin and connectTimeout 250ms.
// Nested policies merge per field too, so a caller that sets only retries.attempts
// keeps the callee's retries.perTryTimeout. Nil layers are skipped. The result
// shares no memory with the layers.
func MergeTraffic(layers ...*v1alpha1.TrafficPolicy) v1alpha1.TrafficPolicy {
	var out v1alpha1.TrafficPolicy
	for _, l := range layers {
		if l == nil {
			continue
		}
		fillString(&out.LoadBalancer, l.LoadBalancer)
		fill(&out.HashOn, l.HashOn)
		fill(&out.ConnectTimeout, l.ConnectTimeout)
		fill(&out.Timeout, l.Timeout)
		if r := l.Retries; r != nil {
			out.Retries = orNew(out.Retries)
			fill(&out.Retries.Attempts, r.Attempts)
			fill(&out.Retries.PerTryTimeout, r.PerTryTimeout)
			fillString(&out.Retries.RetryOn, r.RetryOn)
		}
		if cb := l.CircuitBreaker; cb != nil {
			out.CircuitBreaker = orNew(out.CircuitBreaker)
			fill(&out.CircuitBreaker.MaxConnections, cb.MaxConnections)
			fill(&out.CircuitBreaker.MaxPendingRequests, cb.MaxPendingRequests)
			fill(&out.CircuitBreaker.MaxRequests, cb.MaxRequests)
			fill(&out.CircuitBreaker.MaxRetries, cb.MaxRetries)
		}
		if od := l.OutlierDetection; od != nil {
			out.OutlierDetection = orNew(out.OutlierDetection)
			fill(&out.OutlierDetection.Consecutive5xx, od.Consecutive5xx)
			fill(&out.OutlierDetection.Interval, od.Interval)
			fill(&out.OutlierDetection.BaseEjectionTime, od.BaseEjectionTime)
			fill(&out.OutlierDetection.MaxEjectionPercent, od.MaxEjectionPercent)
		}
		if hc := l.HealthCheck; hc != nil {
			out.HealthCheck = orNew(out.HealthCheck)
			fillString(&out.HealthCheck.Path, hc.Path)
			fill(&out.HealthCheck.Interval, hc.Interval)
			fill(&out.HealthCheck.Timeout, hc.Timeout)
			fill(&out.HealthCheck.HealthyThreshold, hc.HealthyThreshold)
			fill(&out.HealthCheck.UnhealthyThreshold, hc.UnhealthyThreshold)
		}
	}
	applyTrafficDefaults(&out, "")
	return out
}

// applyTrafficDefaults sets the built-in defaults where tp leaves them unset: the
// load balancer and connect timeout for every target, and for a target speaking
// protocol HTTP2 or GRPC no request timeout (an HTTP target keeps Envoy's 15s).
// protocol "" adds only the protocol-independent defaults, as MergeTraffic does;
// the route builders, which know the target's protocol, add the rest. It
// touches only top-level fields, so a shallow copy of a policy can take them.
func applyTrafficDefaults(tp *v1alpha1.TrafficPolicy, protocol v1alpha1.Protocol) {
	fillString(&tp.LoadBalancer, DefaultLoadBalancer)
	fill(&tp.ConnectTimeout, new(DefaultConnectTimeout))
	if protocol == v1alpha1.ProtocolHTTP2 || protocol == v1alpha1.ProtocolGRPC {
		fill(&tp.Timeout, new(DefaultStreamTimeout))
	}
}

// fill sets an unset pointer field to a copy of src, so the result never aliases a layer.
func fill[T any](dst **T, src *T) {
	if *dst == nil && src != nil {
		v := *src
		*dst = &v
	}
}

func fillString[T ~string](dst *T, src T) {
	if *dst == "" {
		*dst = src
	}
}

func orNew[T any](p *T) *T {
	if p == nil {
		return new(T)
	}
	return p
}

// tcpOverrideProblem says why a caller's upstreams[index].traffic cannot apply to
// the TCP upstream u, or "" when it can: tcp_proxy has no requests to time out,
// retry or hash, and a TCP endpoint gets a connect-only health check. CEL checks
// the same on a callee's own spec.traffic but cannot see the callee's protocol
// from the caller. The mesh's defaults may carry these fields for its HTTP
// services; on a TCP upstream they are ignored, not an error.
func tcpOverrideProblem(index int, u Upstream, o *v1alpha1.TrafficPolicy) string {
	if o == nil {
		return ""
	}
	var field string
	switch {
	case o.Timeout != nil:
		field = "timeout"
	case o.Retries != nil:
		field = "retries"
	case o.HashOn != nil:
		field = "hashOn"
	case o.HealthCheck != nil && o.HealthCheck.Path != "":
		field = "healthCheck.path"
	default:
		return ""
	}
	return fmt.Sprintf("spec.upstreams[%d].traffic.%s: upstream MeshService %s/%s speaks TCP, and %s applies only to HTTP, HTTP2 and GRPC upstreams; remove it",
		index, field, u.Namespace, u.Name, field)
}
