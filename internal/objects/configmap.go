package objects

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
	"github.com/envoymesh/envoymesh-operator/internal/envoyconfig"
)

// ConfigMap holds the sidecar's bootstrap, its file-watched listeners and clusters
// and, when it has an identity, the SDS files of its identity and trust secrets.
func ConfigMap(ms *meshv1alpha1.MeshService, cfg *envoyconfig.Output) *corev1.ConfigMap {
	return envoyConfigMap(objectMeta(ms, ConfigMapName(ms)), cfg)
}

// envoyConfigMap is the ConfigMap an Envoy mounts at envoyconfig.MountPath,
// annotated with the version of its listeners and clusters. Only rendered files
// are written: a config without identity keeps exactly its three files, and an
// ADS-delivered one holds the bootstrap (and its SDS files) alone, its listeners
// and clusters coming over xDS.
func envoyConfigMap(meta metav1.ObjectMeta, cfg *envoyconfig.Output) *corev1.ConfigMap {
	cm := &corev1.ConfigMap{
		TypeMeta:   typeMeta("v1", "ConfigMap"),
		ObjectMeta: meta,
		Data:       map[string]string{envoyconfig.BootstrapFile: string(cfg.Bootstrap)},
	}
	for name, data := range map[string][]byte{
		envoyconfig.ListenersFile: cfg.Listeners, envoyconfig.ClustersFile: cfg.Clusters,
		envoyconfig.SDSIdentityFile: cfg.SDSIdentity, envoyconfig.SDSTrustFile: cfg.SDSTrust,
	} {
		if len(data) > 0 {
			cm.Data[name] = string(data)
		}
	}
	if cfg.ConfigVersion != "" {
		cm.Annotations = map[string]string{ConfigVersionAnnotation: cfg.ConfigVersion}
	}
	return cm
}
