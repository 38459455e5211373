// Package kubeletdouble is a TEST DOUBLE of the Pod Certificate half of the kubelet (Kubernetes
// v1.37.2), for envtest and the local kwok cluster, where no kubelet runs. It stands in for:
//
//   - pkg/kubelet/podcertificate (IssuingManager): per podCertificate source of a pod bound to the
//     node, the states initial → wait → fresh → waitRefresh → fresh, with denied and failed
//     terminal; each PodCertificateRequest with a new key (generateKeyAndProof's stub PKCS#10
//     request), generateName "req-", the pod as owner, the source's signerName, keyType's key,
//     maxExpirationSeconds and userAnnotations, the ServiceAccount's UID read from the API, the
//     node's name and UID; refresh at status.beginRefreshAt (+ 0–5 min jitter when on) from a
//     refresh pass every 1–2 minutes, the old credentials staying until the new request is issued;
//     a request missing for 10 minutes (+ jitter) taken as deleted; the Warning Events Denied,
//     Failed, CertificateOverdueForRefresh and CertificateExpired, exactly as the kubelet calls its
//     recorder; the bundle: PKCS#8 "PRIVATE KEY" block, then the chain as bare CERTIFICATE blocks.
//   - pkg/kubelet/clustertrustbundle: a clusterTrustBundle source's anchors by name, or by
//     signerName and labelSelector (nil matches nothing, {} everything), deduplicated; optional
//     turns "none" into an empty file.
//   - pkg/volume/projected and pkg/volume/util's AtomicWriter: the volume at
//     <Dir>/<podUID>/volumes/kubernetes.io~projected/<volume>/, written only when every one of
//     its podCertificate and clusterTrustBundle sources has content, through a ..<timestamp>
//     directory, the ..data symlink swapped by rename and name → ..data/name links; modes as
//     collectData sets them (defaultMode, 0600 with fsUser or fsGroup) and, with fsGroup,
//     SetVolumeOwnership's mode|0440 (see ProjectedFileAccess, which also models ownership).
//
// It leaves out, or does differently:
//
//   - Only podCertificate and clusterTrustBundle sources are written; a volume's serviceAccountToken,
//     configMap, secret and downwardAPI sources, and every other volume type, are not.
//   - Files appear as soon as they change (a request issued, a ClusterTrustBundle changed). The
//     kubelet shows them at its next mount of the volume: a pending pod's mount retry, or the
//     periodic remount of a running pod (pod sync every minute or so, trust anchors cached for up
//     to 5 minutes). The double also rewrites every volume on its refresh pass.
//   - No containers are held back while a volume cannot be written: State's MountError says why
//     it was not (the kubelet's FailedMount message), but no FailedMount Event is posted.
//   - No tmpfs, chown or chgrp (the double need not run as root), no SELinux labels, no user
//     namespaces; KEP-5936's defaultUser/user fields stay off, as their alpha gate is by default.
//   - The double authenticates as its client's user, not system:node:<name>, so NodeRestriction
//     and the Node authorizer do not check its requests. The node's UID is given, not looked up.
//   - A request's abandonment is timed from the double's clock when it filed it (the kubelet uses
//     the request's creationTimestamp: the same instant on a real clock, but not on a fake one).
//   - Trust anchors are written sorted; the kubelet shuffles them. Readers must not rely on order.
//   - Volumes stay until the pod object is deleted (the kubelet unmounts them when the pod
//     terminates). No metrics. As in the kubelet, no state survives a restart: every source
//     files a new request.
package kubeletdouble
