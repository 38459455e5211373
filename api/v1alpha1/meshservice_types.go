package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Condition types and reasons a MeshService reports.
const (
	// ConditionReady is True when the Deployment is available (and, once the prober
	// reports, every sidecar is live and synced).
	ConditionReady = "Ready"
	// ConditionUpstreamsResolved is True when every spec.upstreams entry names an existing MeshService.
	ConditionUpstreamsResolved = "UpstreamsResolved"
	// ConditionConfigSynced is True when every live sidecar reports status.configVersion.
	ConditionConfigSynced = "ConfigSynced"
	// ConditionIdentity is True when the sidecars get a workload identity (a
	// SPIFFE certificate); its message says when another MeshService shares it.
	ConditionIdentity = "Identity"
	// ConditionUpstreamsAuthorized is True when every upstream will accept this
	// service's calls; its message names each one that will refuse, and why.
	ConditionUpstreamsAuthorized = "UpstreamsAuthorized"
)

// MeshServiceSpec is one service of the mesh: the application's pod template plus
// how the Envoy sidecar in front of it is reached and what it may call.
// +kubebuilder:validation:XValidation:rule="self.port != self.servicePort",message="spec.port and spec.servicePort must differ: Envoy listens on servicePort and forwards to the app on port",fieldPath=".servicePort"
// +kubebuilder:validation:XValidation:rule="!has(self.upstreams) || self.upstreams.all(u, u.localPort != self.port && u.localPort != self.servicePort)",message="spec.upstreams[].localPort must differ from spec.port and spec.servicePort",fieldPath=".upstreams"
// +kubebuilder:validation:XValidation:rule="!has(self.protocol) || self.protocol != 'TCP' || !has(self.traffic) || !has(self.traffic.timeout)",message="spec.traffic.timeout is HTTP-only and spec.protocol is TCP: there are no requests to time out; use connectTimeout",fieldPath=".traffic.timeout"
// +kubebuilder:validation:XValidation:rule="!has(self.protocol) || self.protocol != 'TCP' || !has(self.traffic) || !has(self.traffic.retries)",message="spec.traffic.retries is HTTP-only and spec.protocol is TCP: there are no requests to retry",fieldPath=".traffic.retries"
// +kubebuilder:validation:XValidation:rule="!has(self.protocol) || self.protocol != 'TCP' || !has(self.traffic) || !has(self.traffic.hashOn)",message="spec.traffic.hashOn is HTTP-only and spec.protocol is TCP: there are no headers to hash",fieldPath=".traffic.hashOn"
// +kubebuilder:validation:XValidation:rule="!has(self.protocol) || self.protocol != 'TCP' || !has(self.traffic) || !has(self.traffic.healthCheck) || !has(self.traffic.healthCheck.path)",message="spec.traffic.healthCheck.path is HTTP-only and spec.protocol is TCP: a TCP service gets a connect-only health check",fieldPath=".traffic.healthCheck.path"
type MeshServiceSpec struct {
	// mesh names the ServiceMesh in this namespace whose defaults apply. A mesh that
	// does not exist is not an error: built-in defaults apply.
	// +kubebuilder:default=default
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +optional
	Mesh string `json:"mesh,omitempty"`

	// replicas is the number of pods of the Deployment.
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=0
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`

	// port is where the application listens inside the pod; the sidecar's inbound
	// listener forwards to 127.0.0.1:port.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +kubebuilder:validation:XValidation:rule="self != 9901 && self != 15021",message="ports 9901 and 15021 are reserved for the Envoy sidecar"
	Port int32 `json:"port"`

	// servicePort is the sidecar's inbound listener and the headless Service's port:
	// callers dial the pod IP at exactly this port.
	// +kubebuilder:default=15006
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +kubebuilder:validation:XValidation:rule="self != 9901 && self != 15021",message="ports 9901 and 15021 are reserved for the Envoy sidecar"
	// +optional
	ServicePort int32 `json:"servicePort,omitempty"`

	// protocol the application speaks; TCP proxies bytes instead of HTTP requests.
	// +kubebuilder:default=HTTP
	// +optional
	Protocol Protocol `json:"protocol,omitempty"`

	// template is the application's pod. The operator adds its labels, the Envoy
	// sidecar and the sidecar's config volume.
	// +kubebuilder:validation:XValidation:rule="has(self.spec) && has(self.spec.containers) && size(self.spec.containers) >= 1",message="spec.template.spec.containers must hold at least one container"
	Template corev1.PodTemplateSpec `json:"template"`

	// upstreams are the MeshServices this one calls. Each gets an egress listener on
	// 127.0.0.1:localPort inside the pod. Naming the same service twice is reported
	// in the Ready condition (CEL cannot see the defaulted namespace).
	// +kubebuilder:validation:MaxItems=128
	// +kubebuilder:validation:XValidation:rule="self.all(u, self.filter(v, v.localPort == u.localPort).size() == 1)",message="spec.upstreams[].localPort must be unique"
	// +listType=atomic
	// +optional
	Upstreams []Upstream `json:"upstreams,omitempty"`

	// traffic is how callers reach this service; a caller's upstreams[].traffic overrides it.
	// +optional
	Traffic *TrafficPolicy `json:"traffic,omitempty"`

	// sidecar overrides the mesh's sidecar settings for this service.
	// +optional
	Sidecar *SidecarSettings `json:"sidecar,omitempty"`

	// allowFrom consents to callers from other namespaces: MeshServices and
	// gateways there that name or route to this service are accepted only when an
	// entry matches their namespace (and, when set, their ServiceAccount). Callers
	// of this service's own namespace need no entry: declaring it is enough.
	// +kubebuilder:validation:MaxItems=64
	// +listType=atomic
	// +optional
	AllowFrom []AllowFrom `json:"allowFrom,omitempty"`

	// disruption, when set, gives the pods a PodDisruptionBudget <name> that
	// voluntary evictions (a node drain) respect.
	// +optional
	Disruption *Disruption `json:"disruption,omitempty"`
}

// Upstream is a MeshService this one calls through a local egress listener.
type Upstream struct {
	// name of the upstream MeshService.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`

	// namespace of the upstream MeshService; defaults to this MeshService's namespace.
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +optional
	Namespace string `json:"namespace,omitempty"`

	// localPort is where the app reaches the upstream: 127.0.0.1:localPort.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +kubebuilder:validation:XValidation:rule="self != 9901 && self != 15021",message="ports 9901 and 15021 are reserved for the Envoy sidecar"
	LocalPort int32 `json:"localPort"`

	// traffic overrides the upstream's own spec.traffic for calls from this service.
	// +optional
	Traffic *TrafficPolicy `json:"traffic,omitempty"`
}

// AllowFrom accepts callers from another namespace.
type AllowFrom struct {
	// namespace of the callers.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Namespace string `json:"namespace"`
	// serviceAccount, when set, accepts only that ServiceAccount's identity of the
	// namespace; unset accepts every identity of it.
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	// +optional
	ServiceAccount string `json:"serviceAccount,omitempty"`
}

// MeshServiceStatus is what the operator wrote and what the sidecars report.
type MeshServiceStatus struct {
	// observedGeneration is the spec generation the status was last computed from successfully.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready, UpstreamsResolved, ConfigSynced.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// replicas is the Deployment's current pod count.
	// +optional
	Replicas int32 `json:"replicas,omitempty"`

	// readyReplicas is the Deployment's ready pod count.
	// +optional
	ReadyReplicas int32 `json:"readyReplicas,omitempty"`

	// selector is the label selector of the pods, as text: the scale
	// subresource's, which a HorizontalPodAutoscaler reads.
	// +optional
	Selector string `json:"selector,omitempty"`

	// ready is readyReplicas/replicas as text, for the READY printer column.
	// +optional
	Ready string `json:"ready,omitempty"`

	// synced is synced/total sidecars as text, for the SYNCED printer column.
	// +optional
	Synced string `json:"synced,omitempty"`

	// configVersion is the content hash of the generated listeners and clusters; it
	// is the version_info of lds.yaml and cds.yaml.
	// +optional
	ConfigVersion string `json:"configVersion,omitempty"`

	// sidecars counts the sidecars by what their admin API reports.
	// +optional
	Sidecars *SidecarCounts `json:"sidecars,omitempty"`

	// proxies lists per-pod sidecar observations, capped at 20 entries.
	// +kubebuilder:validation:MaxItems=20
	// +listType=atomic
	// +optional
	Proxies []ProxyStatus `json:"proxies,omitempty"`

	// upstreams reports each spec.upstreams entry.
	// +listType=atomic
	// +optional
	Upstreams []UpstreamStatus `json:"upstreams,omitempty"`

	// identity is who the sidecars are to their peers.
	// +optional
	Identity *IdentityStatus `json:"identity,omitempty"`

	// authorizedCallers are the identities this service accepts calls from.
	// +optional
	AuthorizedCallers *AuthorizedCallers `json:"authorizedCallers,omitempty"`
}

// AuthorizedCallers lists the SPIFFE IDs the inbound policy allows.
type AuthorizedCallers struct {
	// count of the authorized identities; spiffeIDs lists the first 20.
	Count int32 `json:"count"`
	// +kubebuilder:validation:MaxItems=20
	// +listType=atomic
	// +optional
	SPIFFEIDs []string `json:"spiffeIDs,omitempty"`
}

// IdentityStatus is the workload identity of a MeshService's pods.
type IdentityStatus struct {
	// serviceAccount the pods run as; the identity is the ServiceAccount's.
	ServiceAccount string `json:"serviceAccount"`
	// spiffeID in the sidecars' certificates; empty when the mesh's mTLS is Disabled.
	// +optional
	SPIFFEID string `json:"spiffeID,omitempty"`
}

// SidecarCounts summarises every sidecar of a MeshService.
type SidecarCounts struct {
	Total       int32 `json:"total"`
	Live        int32 `json:"live"`
	Synced      int32 `json:"synced"`
	Rejected    int32 `json:"rejected"`
	Unreachable int32 `json:"unreachable"`
}

// ProxyStatus is what one pod's sidecar reported on its last probe.
type ProxyStatus struct {
	Pod string `json:"pod"`
	// state is Envoy's server state (LIVE, DRAINING, PRE_INITIALIZING, INITIALIZING) or Unreachable.
	State string `json:"state"`
	// +optional
	EnvoyVersion string `json:"envoyVersion,omitempty"`
	// +optional
	ConfigVersion string `json:"configVersion,omitempty"`
	Synced        bool   `json:"synced"`
	Rejected      bool   `json:"rejected"`
	// +optional
	LastProbeTime *metav1.Time `json:"lastProbeTime,omitempty"`
	// +optional
	Error string `json:"error,omitempty"`
	// certificateExpiry of the sidecar's identity certificate, as it reports it.
	// +optional
	CertificateExpiry *metav1.Time `json:"certificateExpiry,omitempty"`
	// denied counts the inbound connections and requests the sidecar refused
	// since it started: authorization denials and failed TLS handshakes.
	// +optional
	Denied int64 `json:"denied,omitempty"`
	// auditDenied counts what Enforce would have denied, in Audit mode.
	// +optional
	AuditDenied int64 `json:"auditDenied,omitempty"`
	// xds is the proxy's ADS stream to the operator, in meshes whose delivery
	// is XDS: there configVersion is the version the proxy ACKed.
	// +optional
	XDS *XDSProxyStatus `json:"xds,omitempty"`
}

// XDSProxyStatus is what one proxy's ADS stream tells: whether it is open, the
// version the proxy accepted, and the last version it rejected with Envoy's reason.
type XDSProxyStatus struct {
	// connected is true while the proxy holds a stream to an operator replica.
	Connected bool `json:"connected"`
	// ackedVersion is the last version the proxy ACKed for every resource type.
	// +optional
	AckedVersion string `json:"ackedVersion,omitempty"`
	// rejectedVersion is the last version the proxy NACKed, while it is current.
	// +optional
	RejectedVersion string `json:"rejectedVersion,omitempty"`
	// rejectReason is Envoy's error_detail for rejectedVersion.
	// +optional
	RejectReason string `json:"rejectReason,omitempty"`
}

// UpstreamStatus reports one spec.upstreams entry.
type UpstreamStatus struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	// resolved is true when the upstream MeshService exists.
	Resolved bool `json:"resolved"`
	// authorized is true when the upstream accepts this service's calls.
	// +optional
	Authorized bool `json:"authorized,omitempty"`
	// +optional
	HealthyEndpoints int32 `json:"healthyEndpoints,omitempty"`
	// +optional
	Endpoints int32 `json:"endpoints,omitempty"`
}

// MeshService is one service of an Envoy mesh: the operator runs its pods with an
// Envoy sidecar, a headless Service and the sidecar's config.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:subresource:scale:specpath=.spec.replicas,statuspath=.status.replicas,selectorpath=.status.selector
// +kubebuilder:resource:shortName=ms,categories=envoymesh
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.ready`
// +kubebuilder:printcolumn:name="Synced",type=string,JSONPath=`.status.synced`
// +kubebuilder:printcolumn:name="Status",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// The name <mesh>-gateway is the mesh gateway's: its Deployment, Service and
// ConfigMap would collide. A MeshService that already had it under the same mesh
// (created before this rule) stays updatable, so it can still be deleted.
// +kubebuilder:validation:XValidation:rule="self.metadata.name != (has(self.spec) && has(self.spec.mesh) ? self.spec.mesh : 'default') + '-gateway' || (oldSelf.hasValue() && (has(oldSelf.value().spec) && has(oldSelf.value().spec.mesh) ? oldSelf.value().spec.mesh : 'default') == (has(self.spec) && has(self.spec.mesh) ? self.spec.mesh : 'default'))",message="metadata.name must not be spec.mesh + '-gateway': that name belongs to the mesh's gateway objects; rename the MeshService",optionalOldSelf=true
type MeshService struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   MeshServiceSpec   `json:"spec,omitempty"`
	Status MeshServiceStatus `json:"status,omitempty"`
}

// MeshServiceList is a list of MeshServices.
// +kubebuilder:object:root=true
type MeshServiceList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []MeshService `json:"items"`
}

func init() {
	SchemeBuilder.Register(&MeshService{}, &MeshServiceList{})
}
