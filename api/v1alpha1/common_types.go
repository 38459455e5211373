package v1alpha1

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Ports the sidecar keeps for itself. The admin API listens on loopback only; the
// status listener exposes a read-only subset of it to the operator's prober.
const (
	EnvoyAdminPort  = 9901
	EnvoyStatusPort = 15021
)

// Protocol is how a MeshService speaks on its port.
// +kubebuilder:validation:Enum=HTTP;HTTP2;GRPC;TCP
type Protocol string

const (
	ProtocolHTTP  Protocol = "HTTP"
	ProtocolHTTP2 Protocol = "HTTP2"
	ProtocolGRPC  Protocol = "GRPC"
	ProtocolTCP   Protocol = "TCP"
)

// LoadBalancer names an Envoy load-balancing policy.
// +kubebuilder:validation:Enum=RoundRobin;LeastRequest;Random;RingHash;Maglev
type LoadBalancer string

const (
	LoadBalancerRoundRobin   LoadBalancer = "RoundRobin"
	LoadBalancerLeastRequest LoadBalancer = "LeastRequest"
	LoadBalancerRandom       LoadBalancer = "Random"
	LoadBalancerRingHash     LoadBalancer = "RingHash"
	LoadBalancerMaglev       LoadBalancer = "Maglev"
)

// Duration is a Go duration string such as "250ms" or "1m30s", as in Gateway API.
// The pattern admits only what time.ParseDuration accepts and the CEL rule rejects
// zero and overflow, so every stored value parses.
// +kubebuilder:validation:MaxLength=32
// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="must be a positive duration such as 250ms or 5s"
type Duration string

// Parse returns the duration; the API server has already validated it.
func (d Duration) Parse() (time.Duration, error) { return time.ParseDuration(string(d)) }

// RequestTimeout is a Duration that may also be zero: "0s" turns the request
// timeout off (Envoy's route timeout 0), explicitly, where an unset timeout
// falls through to the next layer and then to the built-in default.
// +kubebuilder:validation:MaxLength=32
// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s')",message="must be a duration such as 5s, or 0s for no timeout"
type RequestTimeout string

// Parse returns the duration; the API server has already validated it.
func (d RequestTimeout) Parse() (time.Duration, error) { return time.ParseDuration(string(d)) }

// TrafficPolicy is how callers reach a service: the settings of the Envoy cluster
// that a caller's sidecar builds for it. Unset fields fall through to the next layer:
// the caller's upstreams[].traffic, the callee's spec.traffic, the mesh's defaults,
// then the built-in defaults (RoundRobin, connectTimeout 250ms, and for HTTP2 and
// GRPC services no request timeout, so long streams are not cut).
// hashOn is checked against loadBalancer within one layer, so a layer that asks for
// sticky routing says which consistent-hash policy it means.
// +kubebuilder:validation:XValidation:rule="!has(self.hashOn) || (has(self.loadBalancer) && (self.loadBalancer == 'RingHash' || self.loadBalancer == 'Maglev'))",message="traffic.hashOn needs traffic.loadBalancer RingHash or Maglev in the same policy: other load balancers ignore the hash",fieldPath=".hashOn"
type TrafficPolicy struct {
	// loadBalancer is the Envoy load-balancing policy across the upstream's endpoints.
	// +optional
	LoadBalancer LoadBalancer `json:"loadBalancer,omitempty"`

	// hashOn is what RingHash and Maglev hash to pick an endpoint, so requests with
	// the same key stick to the same endpoint (HTTP protocols only).
	// +optional
	HashOn *HashOn `json:"hashOn,omitempty"`

	// connectTimeout bounds establishing a connection to an upstream endpoint.
	// +optional
	ConnectTimeout *Duration `json:"connectTimeout,omitempty"`

	// timeout bounds a whole request, retries included (HTTP protocols only);
	// 0s means no timeout. Unset, an HTTP service gets Envoy's 15s and an HTTP2
	// or GRPC service none (the stream idle timeout still applies).
	// +optional
	Timeout *RequestTimeout `json:"timeout,omitempty"`

	// retries retries failed requests (HTTP protocols only).
	// +optional
	Retries *RetryPolicy `json:"retries,omitempty"`

	// circuitBreaker caps concurrent work towards the upstream.
	// +optional
	CircuitBreaker *CircuitBreaker `json:"circuitBreaker,omitempty"`

	// outlierDetection ejects endpoints that keep failing.
	// +optional
	OutlierDetection *OutlierDetection `json:"outlierDetection,omitempty"`

	// healthCheck actively probes every upstream endpoint over HTTP.
	// +optional
	HealthCheck *HealthCheck `json:"healthCheck,omitempty"`
}

// HashOn is the key of consistent-hash load balancing: the route's hash_policy.
type HashOn struct {
	// header hashes the value of this request header; requests without it are
	// spread at random.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^[-!#$%&'*+.^_|~0-9A-Za-z]+$`
	Header string `json:"header"`
}

// RetryPolicy maps to Envoy's route retry_policy.
// +kubebuilder:validation:XValidation:rule="has(self.attempts)",message="traffic.retries.attempts is required when retries is set: say how many retries to make (0 turns them off)",fieldPath=".attempts"
type RetryPolicy struct {
	// attempts is the number of retries after the first try.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=10
	// +optional
	Attempts *int32 `json:"attempts,omitempty"`

	// perTryTimeout bounds each try.
	// +optional
	PerTryTimeout *Duration `json:"perTryTimeout,omitempty"`

	// retryOn is Envoy's x-envoy-retry-on list, e.g. "5xx,connect-failure".
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^[a-z0-9-]+(,[a-z0-9-]+)*$`
	// +optional
	RetryOn string `json:"retryOn,omitempty"`
}

// CircuitBreaker maps to the default-priority thresholds of Envoy's circuit_breakers.
type CircuitBreaker struct {
	// +kubebuilder:validation:Minimum=0
	// +optional
	MaxConnections *int32 `json:"maxConnections,omitempty"`
	// +kubebuilder:validation:Minimum=0
	// +optional
	MaxPendingRequests *int32 `json:"maxPendingRequests,omitempty"`
	// +kubebuilder:validation:Minimum=0
	// +optional
	MaxRequests *int32 `json:"maxRequests,omitempty"`
	// +kubebuilder:validation:Minimum=0
	// +optional
	MaxRetries *int32 `json:"maxRetries,omitempty"`
}

// OutlierDetection maps to Envoy's cluster outlier_detection.
type OutlierDetection struct {
	// consecutive5xx ejects an endpoint after this many consecutive 5xx responses.
	// +kubebuilder:validation:Minimum=0
	// +optional
	Consecutive5xx *int32 `json:"consecutive5xx,omitempty"`

	// interval between ejection sweeps.
	// +optional
	Interval *Duration `json:"interval,omitempty"`

	// baseEjectionTime is how long an endpoint stays ejected the first time.
	// +optional
	BaseEjectionTime *Duration `json:"baseEjectionTime,omitempty"`

	// maxEjectionPercent caps the share of endpoints ejected at once.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	// +optional
	MaxEjectionPercent *int32 `json:"maxEjectionPercent,omitempty"`
}

// HealthCheck is an active HTTP health check of every upstream endpoint.
// +kubebuilder:validation:XValidation:rule="!has(self.timeout) || !has(self.interval) || duration(self.timeout) < duration(self.interval)",message="traffic.healthCheck.timeout must be shorter than traffic.healthCheck.interval",fieldPath=".timeout"
type HealthCheck struct {
	// path is requested with GET; a 200 marks the endpoint healthy.
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:Pattern=`^/[^\s]*$`
	// +optional
	Path string `json:"path,omitempty"`

	// +optional
	Interval *Duration `json:"interval,omitempty"`

	// +optional
	Timeout *Duration `json:"timeout,omitempty"`

	// +kubebuilder:validation:Minimum=1
	// +optional
	HealthyThreshold *int32 `json:"healthyThreshold,omitempty"`

	// +kubebuilder:validation:Minimum=1
	// +optional
	UnhealthyThreshold *int32 `json:"unhealthyThreshold,omitempty"`
}

// SidecarSettings configure the Envoy sidecar. On a ServiceMesh they are the
// defaults of its members; on a MeshService they override the mesh's.
type SidecarSettings struct {
	// image of the Envoy sidecar.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	// +optional
	Image string `json:"image,omitempty"`

	// logLevel of Envoy.
	// +kubebuilder:validation:Enum=trace;debug;info;warning;error;critical;off
	// +optional
	LogLevel string `json:"logLevel,omitempty"`

	// resources of the sidecar container; unset means small requests and no limits.
	// +optional
	Resources *corev1.ResourceRequirements `json:"resources,omitempty"`

	// concurrency is Envoy's worker thread count (--concurrency).
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=64
	// +optional
	Concurrency *int32 `json:"concurrency,omitempty"`
}

// Disruption bounds how many pods voluntary disruptions (evictions during a
// node drain) may take down at once: the PodDisruptionBudget's two fields.
// +kubebuilder:validation:XValidation:rule="has(self.maxUnavailable) != has(self.minAvailable)",message="disruption must set exactly one of maxUnavailable and minAvailable"
type Disruption struct {
	// maxUnavailable pods, a number or a percentage such as "25%".
	// +kubebuilder:validation:XIntOrString
	// +kubebuilder:validation:XValidation:rule="type(self) == int ? self >= 0 : self.matches('^[0-9]+%$')",message="maxUnavailable must be a number ≥ 0 or a percentage such as 25%"
	// +optional
	MaxUnavailable *intstr.IntOrString `json:"maxUnavailable,omitempty"`
	// minAvailable pods, a number or a percentage such as "50%".
	// +kubebuilder:validation:XIntOrString
	// +kubebuilder:validation:XValidation:rule="type(self) == int ? self >= 0 : self.matches('^[0-9]+%$')",message="minAvailable must be a number ≥ 0 or a percentage such as 50%"
	// +optional
	MinAvailable *intstr.IntOrString `json:"minAvailable,omitempty"`
}
