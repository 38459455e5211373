package objects

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
	"github.com/envoymesh/envoymesh-operator/internal/envoyconfig"
)

// ConfigMap holds the sidecar's bootstrap and its file-watched listeners and clusters.
func ConfigMap(ms *meshv1alpha1.MeshService, cfg *envoyconfig.Output) *corev1.ConfigMap {
	return envoyConfigMap(objectMeta(ms, ConfigMapName(ms)), cfg)
}

// envoyConfigMap is the ConfigMap an Envoy mounts at envoyconfig.MountPath,
// annotated with the version of its listeners and clusters.
func envoyConfigMap(meta metav1.ObjectMeta, cfg *envoyconfig.Output) *corev1.ConfigMap {
	cm := &corev1.ConfigMap{
		TypeMeta:   typeMeta("v1", "ConfigMap"),
		ObjectMeta: meta,
		Data: map[string]string{
			envoyconfig.BootstrapFile: string(cfg.Bootstrap),
			envoyconfig.ListenersFile: string(cfg.Listeners),
			envoyconfig.ClustersFile:  string(cfg.Clusters),
		},
	}
	cm.Annotations = map[string]string{ConfigVersionAnnotation: cfg.ConfigVersion}
	return cm
}
