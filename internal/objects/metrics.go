package objects

import (
	"strconv"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
	"github.com/envoymesh/envoymesh-operator/internal/envoyconfig"
)

// Prometheus scrape annotations on every meshed pod, the convention of the
// kubernetes-pods job of Prometheus' example configuration and of most charts.
const (
	ScrapeAnnotation     = "prometheus.io/scrape"
	ScrapePortAnnotation = "prometheus.io/port"
	ScrapePathAnnotation = "prometheus.io/path"
	// MetricsPath is where the status port serves Envoy's Prometheus stats.
	MetricsPath = "/stats/prometheus"
)

// scrapeKeys are the annotations ScrapeAnnotations sets.
var scrapeKeys = []string{ScrapeAnnotation, ScrapePortAnnotation, ScrapePathAnnotation}

// ScrapeAnnotations point a Prometheus that honours the prometheus.io/*
// convention at the proxy's status port.
func ScrapeAnnotations() map[string]string {
	return map[string]string{
		ScrapeAnnotation:     "true",
		ScrapePortAnnotation: strconv.Itoa(int(envoyconfig.StatusPort)),
		ScrapePathAnnotation: MetricsPath,
	}
}

// withScrapeAnnotations adds ScrapeAnnotations to a pod template's annotations
// unless the user's template already sets any of them: the convention allows one
// scrape target per pod, and an app that asks to be scraped itself keeps it (its
// proxy is then scraped through a PodMonitor, which names the port itself).
func withScrapeAnnotations(annotations map[string]string) map[string]string {
	for _, k := range scrapeKeys {
		if _, ok := annotations[k]; ok {
			return annotations
		}
	}
	return merge(annotations, ScrapeAnnotations())
}

// PodMonitor API of the Prometheus Operator, written as unstructured so that the
// operator does not depend on its Go module.
const (
	PodMonitorGroup      = "monitoring.coreos.com"
	PodMonitorVersion    = "v1"
	PodMonitorKind       = "PodMonitor"
	PodMonitorResource   = "podmonitors"
	PodMonitorAPIVersion = PodMonitorGroup + "/" + PodMonitorVersion
	// PodMonitorSuffix ends the name of a mesh's PodMonitor.
	PodMonitorSuffix = "-proxies"
)

// PodMonitorName is the name of the PodMonitor covering mesh's proxies.
func PodMonitorName(mesh *meshv1alpha1.ServiceMesh) string { return mesh.Name + PodMonitorSuffix }

// PodMonitorSelectorLabels pick every pod of the mesh the operator writes: the
// member MeshServices' pods (part-of is their spec.mesh, and a MeshService names
// a mesh of its own namespace) and the gateway's.
func PodMonitorSelectorLabels(mesh *meshv1alpha1.ServiceMesh) map[string]string {
	return map[string]string{partOfLabel: mesh.Name, ManagedByLabel: ManagedBy}
}

// PodMonitor scrapes the Envoy status port (by its container port name, present
// on sidecars and gateways alike) of every pod of mesh, in the mesh's namespace,
// controlled by the mesh, labelling the series with the pods' name and part-of.
func PodMonitor(mesh *meshv1alpha1.ServiceMesh) *unstructured.Unstructured {
	selector := map[string]any{}
	for k, v := range PodMonitorSelectorLabels(mesh) {
		selector[k] = v
	}
	labels := map[string]any{}
	for k, v := range PodMonitorSelectorLabels(mesh) {
		labels[k] = v
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": PodMonitorAPIVersion,
		"kind":       PodMonitorKind,
		"metadata": map[string]any{
			"name":      PodMonitorName(mesh),
			"namespace": mesh.Namespace,
			"labels":    labels,
		},
		"spec": map[string]any{
			"selector": map[string]any{"matchLabels": selector},
			"podMetricsEndpoints": []any{map[string]any{
				"port": StatusPortName,
				"path": MetricsPath,
			}},
			// On every series as app_kubernetes_io_name (the MeshService, or
			// <mesh>-gateway) and app_kubernetes_io_part_of (the mesh), as the
			// dashboard in config/grafana groups them.
			"podTargetLabels": []any{nameLabel, partOfLabel},
		},
	}}
	u.SetOwnerReferences(gatewayMeta(mesh, "").OwnerReferences)
	return u
}
