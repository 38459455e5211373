package controllers

import (
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/envoymesh/envoymesh-operator/internal/envoyconfig"
)

// envoyConfigMap is an Envoy's ConfigMap as an ownedObject. Its version is that
// of the files it holds (and the owner's UID, which the owner reference
// carries): under ADS the bootstrap's alone, as listeners and clusters go over
// xDS, not into the ConfigMap. So a
// reconcile whose set did not change neither renders nor sends it; render turns
// the rendered files into the ConfigMap.
func envoyConfigMap(owner client.Object, name string, res *envoyconfig.Resources, render func(*envoyconfig.Output) *corev1.ConfigMap) ownedObject {
	existing := configMapMeta()
	existing.Namespace, existing.Name = owner.GetNamespace(), name
	version := res.FilesVersion + "/" + string(owner.GetUID())
	return ownedVersioned("ConfigMap", existing, version, func() (client.Object, error) {
		files, err := envoyconfig.Render(res)
		if err != nil {
			return nil, err
		}
		return render(files), nil
	})
}
