package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ServiceMeshSpec holds what is mesh-wide: sidecar and traffic defaults for the
// MeshServices that name this mesh, and the edge gateway (the seed's "front Envoy").
type ServiceMeshSpec struct {
	// sidecar is the default sidecar configuration of every member MeshService.
	// +optional
	Sidecar *SidecarSettings `json:"sidecar,omitempty"`

	// defaults is the traffic policy used where neither caller nor callee set one.
	// +optional
	Defaults *TrafficPolicy `json:"defaults,omitempty"`

	// gateway is the edge Envoy that routes outside traffic into the mesh.
	// +optional
	Gateway *Gateway `json:"gateway,omitempty"`

	// mtls sets whether the mesh's sidecars and gateway get a workload identity
	// and, with it, mutual TLS.
	// +optional
	MTLS *MTLS `json:"mtls,omitempty"`

	// authorization sets whether the sidecars admit only the callers the call
	// graph authorizes.
	// +optional
	Authorization *Authorization `json:"authorization,omitempty"`

	// accessLog, when set, gives every sidecar and the gateway an access log on stdout.
	// +optional
	AccessLog *AccessLog `json:"accessLog,omitempty"`

	// tracing, when set, sends spans from every sidecar and the gateway to an
	// OpenTelemetry collector.
	// +optional
	Tracing *Tracing `json:"tracing,omitempty"`

	// metrics sets how the proxies' Prometheus metrics are scraped.
	// +optional
	Metrics *Metrics `json:"metrics,omitempty"`

	// delivery is how the sidecars and the gateway receive their listeners
	// and clusters: ConfigMap (the default) as files the kubelet syncs, within
	// about a minute; XDS pushed by the operator over gRPC, in well under a
	// second, with endpoints from EndpointSlices. Changing it rolls the mesh's
	// pods once.
	// +kubebuilder:default=ConfigMap
	// +optional
	Delivery DeliveryMode `json:"delivery,omitempty"`
}

// DeliveryMode is how the proxies receive their config.
// +kubebuilder:validation:Enum=ConfigMap;XDS
type DeliveryMode string

// Delivery modes.
const (
	DeliveryConfigMap DeliveryMode = "ConfigMap"
	DeliveryXDS       DeliveryMode = "XDS"
)

// DeliveryModeOf is the mesh's delivery, ConfigMap when unset or without a mesh.
func DeliveryModeOf(mesh *ServiceMesh) DeliveryMode {
	if mesh == nil || mesh.Spec.Delivery == "" {
		return DeliveryConfigMap
	}
	return mesh.Spec.Delivery
}

// AccessLogFormat is how each access log line is written.
// +kubebuilder:validation:Enum=JSON;Text
type AccessLogFormat string

// Access log formats.
const (
	AccessLogJSON AccessLogFormat = "JSON"
	AccessLogText AccessLogFormat = "Text"
)

// AccessLog is the proxies' access log on stdout.
type AccessLog struct {
	// format of each line: JSON (one object per request or connection) or Text.
	// +kubebuilder:default=JSON
	// +optional
	Format AccessLogFormat `json:"format,omitempty"`
}

// Tracing sends spans to an OpenTelemetry collector over gRPC.
type Tracing struct {
	// collector is the OpenTelemetry collector's Service.
	Collector CollectorRef `json:"collector"`
	// samplingPercentage of requests traced (0-100), 1 by default.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	// +kubebuilder:default=1
	// +optional
	SamplingPercentage *int32 `json:"samplingPercentage,omitempty"`
}

// CollectorRef names a collector Service and its OTLP/gRPC port.
type CollectorRef struct {
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`
	// namespace of the Service; defaults to the mesh's.
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +optional
	Namespace string `json:"namespace,omitempty"`
	// port of OTLP over gRPC, 4317 by default.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +kubebuilder:default=4317
	// +optional
	Port int32 `json:"port,omitempty"`
}

// Metrics sets how the proxies' metrics are scraped.
type Metrics struct {
	// podMonitor asks for a Prometheus Operator PodMonitor covering the mesh's
	// sidecars and gateway; it is written only when that CRD is installed, and a
	// condition says so otherwise.
	// +optional
	PodMonitor bool `json:"podMonitor,omitempty"`
}

// AuthorizationMode is how the inbound policy is applied.
// +kubebuilder:validation:Enum=Enforce;Audit;Off
type AuthorizationMode string

// Authorization modes.
const (
	// AuthorizationEnforce admits only the authorized callers.
	AuthorizationEnforce AuthorizationMode = "Enforce"
	// AuthorizationAudit admits every mesh identity and counts what Enforce would deny.
	AuthorizationAudit AuthorizationMode = "Audit"
	// AuthorizationOff admits every mesh identity.
	AuthorizationOff AuthorizationMode = "Off"
)

// Authorization is the mesh's authorization setting.
type Authorization struct {
	// mode: Enforce (the default) admits only the callers that declare the
	// service (and, from other namespaces, that it consents to); Audit admits any
	// mesh identity and counts what Enforce would deny; Off admits any mesh identity.
	// +kubebuilder:default=Enforce
	// +optional
	Mode AuthorizationMode `json:"mode,omitempty"`
}

// AuthorizationModeOf is the mesh's mode, Enforce when unset or without a mesh.
func AuthorizationModeOf(mesh *ServiceMesh) AuthorizationMode {
	if mesh == nil || mesh.Spec.Authorization == nil || mesh.Spec.Authorization.Mode == "" {
		return AuthorizationEnforce
	}
	return mesh.Spec.Authorization.Mode
}

// MTLSMode is how much of the mesh's traffic is mutual TLS.
// +kubebuilder:validation:Enum=Strict;Permissive;Disabled
type MTLSMode string

// MTLS modes. Every mode but Disabled gives the mesh's pods an identity.
const (
	MTLSStrict     MTLSMode = "Strict"
	MTLSPermissive MTLSMode = "Permissive"
	MTLSDisabled   MTLSMode = "Disabled"
)

// MTLS is the mesh's mutual TLS setting.
type MTLS struct {
	// mode: Strict (the default) or Permissive give every sidecar and the gateway
	// a certificate; Disabled gives none.
	// +kubebuilder:default=Strict
	// +optional
	Mode MTLSMode `json:"mode,omitempty"`
}

// MTLSModeOf is the mesh's mode, Strict when unset or when there is no mesh
// (built-in defaults apply then).
func MTLSModeOf(mesh *ServiceMesh) MTLSMode {
	if mesh == nil || mesh.Spec.MTLS == nil || mesh.Spec.MTLS.Mode == "" {
		return MTLSStrict
	}
	return mesh.Spec.MTLS.Mode
}

// HasIdentity reports whether the mesh's pods present certificates to each
// other: whether its mTLS mode is not Disabled.
func HasIdentity(mesh *ServiceMesh) bool { return MTLSModeOf(mesh) != MTLSDisabled }

// NeedsCertificate reports whether the mesh's pods get a Pod Certificate: for
// mTLS, or to authenticate their ADS stream when delivery is XDS (even with
// mTLS Disabled).
func NeedsCertificate(mesh *ServiceMesh) bool {
	return HasIdentity(mesh) || DeliveryModeOf(mesh) == DeliveryXDS
}

// Gateway is the mesh's front Envoy.
type Gateway struct {
	// enabled runs the gateway.
	// +optional
	Enabled bool `json:"enabled,omitempty"`

	// replicas of the gateway Deployment.
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=0
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`

	// port the gateway Service exposes.
	// +kubebuilder:default=80
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +optional
	Port int32 `json:"port,omitempty"`

	// serviceType of the gateway Service.
	// +kubebuilder:default=ClusterIP
	// +kubebuilder:validation:Enum=ClusterIP;NodePort;LoadBalancer
	// +optional
	ServiceType corev1.ServiceType `json:"serviceType,omitempty"`

	// routes send requests by host and path prefix to MeshServices: a request
	// takes the routes of the most specific host it matches (routes without a
	// host serve any other host), and among them the longest prefix wins.
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:XValidation:rule="self.all(r, self.filter(s, s.prefix == r.prefix && (has(s.host) ? s.host : '') == (has(r.host) ? r.host : '')).size() == 1)",message="spec.gateway.routes[].prefix must be unique per spec.gateway.routes[].host"
	// +listType=atomic
	// +optional
	Routes []GatewayRoute `json:"routes,omitempty"`

	// disruption, when set, gives the gateway pods a PodDisruptionBudget
	// <mesh>-gateway.
	// +optional
	Disruption *Disruption `json:"disruption,omitempty"`
}

// GatewayRoute sends requests whose path starts with prefix to a MeshService.
type GatewayRoute struct {
	// prefix of the request path, starting with "/". It matches whole path
	// segments: /api matches /api and /api/v1 but not /apiv2. A prefix ending
	// in "/" matches only below it (/api/ does not match /api).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:XValidation:rule="self.startsWith('/')",message="spec.gateway.routes[].prefix must start with /"
	// +kubebuilder:validation:XValidation:rule="!self.contains('?') && !self.contains('#')",message="spec.gateway.routes[].prefix must not contain ? or #: it matches the path only, not the query or fragment"
	Prefix string `json:"prefix"`

	// host the route serves, matched against the request's Host header: an
	// exact name such as api.example.com or a wildcard such as *.example.com,
	// optionally with :port. Unset, the route serves any host that no route
	// names.
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^([*][.])?[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*(:[0-9]{1,5})?$')",message="spec.gateway.routes[].host must be a lowercase host name such as api.example.com or a wildcard such as *.example.com, optionally with :port"
	// +optional
	Host string `json:"host,omitempty"`

	// service is the name of the target MeshService.
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Service string `json:"service"`

	// namespace of the target MeshService; defaults to the mesh's namespace.
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +optional
	Namespace string `json:"namespace,omitempty"`
}

// ServiceMeshStatus reports the mesh's members and its gateway.
type ServiceMeshStatus struct {
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// services is the number of MeshServices that name this mesh.
	// +optional
	Services int32 `json:"services,omitempty"`

	// readyServices is how many of them are Ready.
	// +optional
	ReadyServices int32 `json:"readyServices,omitempty"`

	// +optional
	Gateway *GatewayStatus `json:"gateway,omitempty"`
}

// GatewayStatus reports the gateway Deployment and where to reach it.
type GatewayStatus struct {
	// +optional
	Replicas int32 `json:"replicas,omitempty"`
	// +optional
	ReadyReplicas int32 `json:"readyReplicas,omitempty"`
	// address is the LoadBalancer ingress, else the ClusterIP.
	// +optional
	Address string `json:"address,omitempty"`
	// configVersion is the content hash of the gateway's listeners and clusters.
	// +optional
	ConfigVersion string `json:"configVersion,omitempty"`
	// synced counts the gateway Envoys that are LIVE on configVersion, as probed.
	// +optional
	Synced int32 `json:"synced,omitempty"`
}

// ServiceMesh holds mesh-wide defaults and the edge gateway of one namespace.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=smesh,categories=envoymesh
// +kubebuilder:printcolumn:name="Services",type=integer,JSONPath=`.status.services`
// +kubebuilder:printcolumn:name="Ready",type=integer,JSONPath=`.status.readyServices`
// +kubebuilder:printcolumn:name="Gateway",type=string,JSONPath=`.status.gateway.address`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ServiceMesh struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ServiceMeshSpec   `json:"spec,omitempty"`
	Status ServiceMeshStatus `json:"status,omitempty"`
}

// ServiceMeshList is a list of ServiceMeshes.
// +kubebuilder:object:root=true
type ServiceMeshList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ServiceMesh `json:"items"`
}

func init() {
	SchemeBuilder.Register(&ServiceMesh{}, &ServiceMeshList{})
}
