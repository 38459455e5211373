package envoyconfig

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/envoymesh/envoymesh-operator/api/v1alpha1"
)

func TestMergeTraffic(t *testing.T) {
	defaults := v1alpha1.TrafficPolicy{LoadBalancer: v1alpha1.LoadBalancerRoundRobin, ConnectTimeout: dur("250ms")}
	tests := []struct {
		name   string
		layers []*v1alpha1.TrafficPolicy
		want   v1alpha1.TrafficPolicy
	}{
		{name: "no layers gives the built-in defaults", want: defaults},
		{name: "nil and empty layers give the built-in defaults", layers: []*v1alpha1.TrafficPolicy{nil, {}, nil}, want: defaults},
		{
			name: "first layer wins per scalar field",
			layers: []*v1alpha1.TrafficPolicy{
				{Timeout: tmo("1s")},
				{Timeout: tmo("2s"), LoadBalancer: v1alpha1.LoadBalancerRandom},
				{Timeout: tmo("3s"), LoadBalancer: v1alpha1.LoadBalancerMaglev, ConnectTimeout: dur("5s")},
			},
			want: v1alpha1.TrafficPolicy{LoadBalancer: v1alpha1.LoadBalancerRandom, ConnectTimeout: dur("5s"), Timeout: tmo("1s")},
		},
		{
			name:   "a nil caller layer falls through to the callee",
			layers: []*v1alpha1.TrafficPolicy{nil, {LoadBalancer: v1alpha1.LoadBalancerLeastRequest}, {LoadBalancer: v1alpha1.LoadBalancerRandom}},
			want:   v1alpha1.TrafficPolicy{LoadBalancer: v1alpha1.LoadBalancerLeastRequest, ConnectTimeout: dur("250ms")},
		},
		{
			name:   "mesh defaults beat built-in defaults",
			layers: []*v1alpha1.TrafficPolicy{nil, nil, {LoadBalancer: v1alpha1.LoadBalancerRingHash, ConnectTimeout: dur("1s")}},
			want:   v1alpha1.TrafficPolicy{LoadBalancer: v1alpha1.LoadBalancerRingHash, ConnectTimeout: dur("1s")},
		},
		{
			name: "retries merge per field",
			layers: []*v1alpha1.TrafficPolicy{
				{Retries: &v1alpha1.RetryPolicy{Attempts: i32(5)}},
				{Retries: &v1alpha1.RetryPolicy{Attempts: i32(2), PerTryTimeout: dur("1s")}},
				{Retries: &v1alpha1.RetryPolicy{PerTryTimeout: dur("9s"), RetryOn: "5xx"}},
			},
			want: v1alpha1.TrafficPolicy{
				LoadBalancer: v1alpha1.LoadBalancerRoundRobin, ConnectTimeout: dur("250ms"),
				Retries: &v1alpha1.RetryPolicy{Attempts: i32(5), PerTryTimeout: dur("1s"), RetryOn: "5xx"},
			},
		},
		{
			name: "zero is a set value and wins",
			layers: []*v1alpha1.TrafficPolicy{
				{Retries: &v1alpha1.RetryPolicy{Attempts: i32(0)}, CircuitBreaker: &v1alpha1.CircuitBreaker{MaxRetries: i32(0)}},
				{Retries: &v1alpha1.RetryPolicy{Attempts: i32(3)}, CircuitBreaker: &v1alpha1.CircuitBreaker{MaxRetries: i32(3)}},
			},
			want: v1alpha1.TrafficPolicy{
				LoadBalancer: v1alpha1.LoadBalancerRoundRobin, ConnectTimeout: dur("250ms"),
				Retries:        &v1alpha1.RetryPolicy{Attempts: i32(0)},
				CircuitBreaker: &v1alpha1.CircuitBreaker{MaxRetries: i32(0)},
			},
		},
		{
			name: "circuit breaker, outlier detection and health check merge per field",
			layers: []*v1alpha1.TrafficPolicy{
				{
					CircuitBreaker:   &v1alpha1.CircuitBreaker{MaxConnections: i32(1)},
					OutlierDetection: &v1alpha1.OutlierDetection{Consecutive5xx: i32(1)},
					HealthCheck:      &v1alpha1.HealthCheck{Path: "/caller"},
				},
				nil,
				{
					CircuitBreaker:   &v1alpha1.CircuitBreaker{MaxConnections: i32(9), MaxPendingRequests: i32(2), MaxRequests: i32(3), MaxRetries: i32(4)},
					OutlierDetection: &v1alpha1.OutlierDetection{Consecutive5xx: i32(9), Interval: dur("1s"), BaseEjectionTime: dur("2s"), MaxEjectionPercent: i32(30)},
					HealthCheck:      &v1alpha1.HealthCheck{Path: "/mesh", Interval: dur("3s"), Timeout: dur("4s"), HealthyThreshold: i32(5), UnhealthyThreshold: i32(6)},
				},
			},
			want: v1alpha1.TrafficPolicy{
				LoadBalancer: v1alpha1.LoadBalancerRoundRobin, ConnectTimeout: dur("250ms"),
				CircuitBreaker:   &v1alpha1.CircuitBreaker{MaxConnections: i32(1), MaxPendingRequests: i32(2), MaxRequests: i32(3), MaxRetries: i32(4)},
				OutlierDetection: &v1alpha1.OutlierDetection{Consecutive5xx: i32(1), Interval: dur("1s"), BaseEjectionTime: dur("2s"), MaxEjectionPercent: i32(30)},
				HealthCheck:      &v1alpha1.HealthCheck{Path: "/caller", Interval: dur("3s"), Timeout: dur("4s"), HealthyThreshold: i32(5), UnhealthyThreshold: i32(6)},
			},
		},
		{
			name:   "an empty nested policy still enables the feature",
			layers: []*v1alpha1.TrafficPolicy{{HealthCheck: &v1alpha1.HealthCheck{}}},
			want:   v1alpha1.TrafficPolicy{LoadBalancer: v1alpha1.LoadBalancerRoundRobin, ConnectTimeout: dur("250ms"), HealthCheck: &v1alpha1.HealthCheck{}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, MergeTraffic(tc.layers...)); diff != "" {
				t.Errorf("MergeTraffic (-want +got):\n%s", diff)
			}
		})
	}
}

// TestMergeTrafficDoesNotAlias makes sure a caller can change the result (or the
// inputs) without one leaking into the other, e.g. through a shared cache object.
func TestMergeTrafficDoesNotAlias(t *testing.T) {
	in := &v1alpha1.TrafficPolicy{
		Timeout: tmo("1s"),
		Retries: &v1alpha1.RetryPolicy{Attempts: i32(1)},
	}
	out := MergeTraffic(in)
	*out.Timeout = "9s"
	*out.Retries.Attempts = 9
	out.Retries.RetryOn = "5xx"
	if *in.Timeout != "1s" || *in.Retries.Attempts != 1 || in.Retries.RetryOn != "" {
		t.Errorf("changing the result changed the input: %+v %+v", in, in.Retries)
	}
}
