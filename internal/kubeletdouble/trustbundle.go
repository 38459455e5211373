package kubeletdouble

// Trust anchors for clusterTrustBundle sources, after pkg/kubelet/clustertrustbundle (v1.37.2).

import (
	"encoding/pem"
	"fmt"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	k8serrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
)

// trustAnchors is the file content of a clusterTrustBundle source: by name, or by signerName and
// labelSelector; optional turns "nothing found" into an empty file.
func (k *Kubelet) trustAnchors(src *corev1.ClusterTrustBundleProjection) ([]byte, error) {
	allowMissing := src.Optional != nil && *src.Optional
	switch {
	case src.Name != nil:
		return k.trustAnchorsByName(*src.Name, allowMissing)
	case src.SignerName != nil:
		return k.trustAnchorsBySigner(*src.SignerName, src.LabelSelector, allowMissing)
	default:
		return nil, fmt.Errorf("ClusterTrustBundle projection requires either name or signerName to be set")
	}
}

func (k *Kubelet) trustAnchorsByName(name string, allowMissing bool) ([]byte, error) {
	ctb, err := k.ctbLister.Get(name)
	if k8serrors.IsNotFound(err) && allowMissing {
		return []byte{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("while getting ClusterTrustBundle: %w", err)
	}
	return normalizeTrustAnchors([]*certificatesv1.ClusterTrustBundle{ctb}), nil
}

// trustAnchorsBySigner selects the bundles of signerName matching labelSelector. As in the
// kubelet, a nil selector matches nothing and an empty one everything.
func (k *Kubelet) trustAnchorsBySigner(signerName string, labelSelector *metav1.LabelSelector, allowMissing bool) ([]byte, error) {
	selector, err := metav1.LabelSelectorAsSelector(labelSelector)
	if err != nil {
		return nil, fmt.Errorf("while parsing label selector: %w", err)
	}
	all, err := k.ctbLister.List(selector)
	if err != nil {
		return nil, fmt.Errorf("while listing ClusterTrustBundles matching label selector %v: %w", labelSelector, err)
	}
	var matched []*certificatesv1.ClusterTrustBundle
	for _, ctb := range all {
		if ctb.Spec.SignerName == signerName {
			matched = append(matched, ctb)
		}
	}
	if len(matched) == 0 {
		if allowMissing {
			return []byte{}, nil
		}
		return nil, fmt.Errorf("combination of signerName and labelSelector matched zero ClusterTrustBundles")
	}
	return normalizeTrustAnchors(matched), nil
}

// normalizeTrustAnchors dedups the bundles' certificates and re-encodes them as bare CERTIFICATE
// blocks, sorted by DER. The kubelet sorts the same way and then shuffles the list once per cache
// entry (an order that changes when it restarts); the double keeps the sorted order, one of those
// the kubelet can produce, so a reader must not depend on the order.
func normalizeTrustAnchors(ctbs []*certificatesv1.ClusterTrustBundle) []byte {
	set := sets.New[string]()
	for _, ctb := range ctbs {
		rest := []byte(ctb.Spec.TrustBundle)
		for {
			var b *pem.Block
			b, rest = pem.Decode(rest)
			if b == nil {
				break
			}
			set.Insert(string(b.Bytes))
		}
	}
	out := []byte{}
	for _, der := range sets.List(set) {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte(der)})...)
	}
	return out
}
