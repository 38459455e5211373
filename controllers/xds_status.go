package controllers

import (
	"fmt"
	"sort"
	"strings"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
	"github.com/envoymesh/envoymesh-operator/internal/envoyadmin"
	"github.com/envoymesh/envoymesh-operator/internal/prober"
	"github.com/envoymesh/envoymesh-operator/internal/xds"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// ReasonXDSRejected is the Warning event of a proxy that NACKed a version.
const ReasonXDSRejected = "XDSRejected"

// ReasonNoXDSServer is the Ready reason of an XDS mesh's member when the
// operator serves no ADS.
const ReasonNoXDSServer = "NoXDSServer"

// observations are the sidecars of ms as status reports them: probed, and in
// an XDS mesh with their versions from their ADS streams (status.proxies[].xds
// is filled in by sidecars).
func (r *MeshServiceReconciler) observations(ms *meshv1alpha1.MeshService, mesh *meshv1alpha1.ServiceMesh) ([]prober.PodObservation, map[string]*meshv1alpha1.XDSProxyStatus) {
	probed := r.Sidecars.Observations(client.ObjectKeyFromObject(ms))
	if r.XDS == nil || meshv1alpha1.DeliveryModeOf(mesh) != meshv1alpha1.DeliveryXDS {
		return probed, nil
	}
	return streamObservations(probed, r.XDS.status(meshServiceNodeKey(ms)), ms.Namespace)
}

// streamObservations are the sidecars of an XDS mesh as status reports them:
// what they ACKed and NACKed on their ADS streams, not what their stats
// counters suggest. A probed pod lends its state, Envoy version, certificate
// and denial counts; its versions come from its stream only (none when it holds
// none). A proxy with a stream but not probed (yet) counts as LIVE once it ACKed
// listeners and clusters: Envoy finishes initializing on them. The second
// result is each pod's stream, for status.proxies[].xds.
func streamObservations(probed []prober.PodObservation, st xds.NodeStatus, namespace string) ([]prober.PodObservation, map[string]*meshv1alpha1.XDSProxyStatus) {
	streams := map[string]xds.ProxyStatus{}
	for _, p := range st.Proxies {
		pod, ok := strings.CutSuffix(p.NodeID, "."+namespace)
		if !ok {
			continue
		}
		// A pod that reconnected may briefly hold two streams: the newer wins.
		if old, seen := streams[pod]; !seen || p.Since.After(old.Since) {
			streams[pod] = p
		}
	}
	current := st.Snapshot[xds.ListenerType]
	byPod := make(map[string]*meshv1alpha1.XDSProxyStatus, len(streams)+len(probed))
	out := make([]prober.PodObservation, 0, len(streams)+len(probed))
	seen := map[string]bool{}
	for _, o := range probed {
		seen[o.Pod] = true
		o.LDSVersion, o.CDSVersion, o.Rejecting = "", "", false
		x := &meshv1alpha1.XDSProxyStatus{}
		if p, ok := streams[o.Pod]; ok {
			withStream(&o, x, p, current)
		}
		byPod[o.Pod] = x
		out = append(out, o)
	}
	pods := make([]string, 0, len(streams))
	for pod := range streams {
		if !seen[pod] {
			pods = append(pods, pod)
		}
	}
	sort.Strings(pods)
	for _, pod := range pods {
		p := streams[pod]
		o := prober.PodObservation{Pod: pod, State: "INITIALIZING"}
		x := &meshv1alpha1.XDSProxyStatus{}
		withStream(&o, x, p, current)
		if o.LDSVersion != "" && o.CDSVersion != "" {
			o.State = envoyadmin.StateLive
		}
		byPod[pod] = x
		out = append(out, o)
	}
	return out, byPod
}

// withStream puts one stream's versions into o and x. A NACK counts as
// rejecting only while it is of the current version: a later snapshot may fix
// what it rejected.
func withStream(o *prober.PodObservation, x *meshv1alpha1.XDSProxyStatus, p xds.ProxyStatus, current string) {
	o.LDSVersion, o.CDSVersion = p.Acked[xds.ListenerType], p.Acked[xds.ClusterType]
	x.Connected = true
	x.AckedVersion = p.ConfigVersion()
	if p.NACK != nil && p.NACK.TypeURL != xds.EndpointType && p.NACK.Version == current && current != "" {
		o.Rejecting = true
		x.RejectedVersion, x.RejectReason = p.NACK.Version, truncate(p.NACK.Message, maxRejectReason)
	}
}

// maxRejectReason bounds Envoy's error text in status: it can list every
// rejected resource.
const maxRejectReason = 1024

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}

// newlyNACKed lists, for a Warning event each, the proxies whose rejection of
// a version next reports and prev did not.
func newlyNACKed(prev, next []meshv1alpha1.ProxyStatus) []string {
	before := map[string]string{}
	for _, p := range prev {
		if p.XDS != nil {
			before[p.Pod] = p.XDS.RejectedVersion
		}
	}
	var out []string
	for _, p := range next {
		if p.XDS == nil || p.XDS.RejectedVersion == "" || before[p.Pod] == p.XDS.RejectedVersion {
			continue
		}
		out = append(out, fmt.Sprintf("proxy %s rejected config version %s over xDS and keeps its last accepted config: %s",
			p.Pod, p.XDS.RejectedVersion, p.XDS.RejectReason))
	}
	return out
}
