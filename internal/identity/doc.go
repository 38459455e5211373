// Package identity is the signer mesh.envoymesh.io/identity: it issues the SPIFFE
// X.509 certificates the kubelet asks for through PodCertificateRequests and
// publishes the CA that verifies them in a ClusterTrustBundle.
//
// Everything here is pure (no API calls, time passed in), so the controllers stay
// thin and the tests can check every field against what kube-apiserver accepts
// (pkg/apis/certificates/validation in k8s.io/kubernetes): a status it rejects
// leaves a pod without a certificate.
//
// CA rotation must never leave a peer holding a leaf it cannot verify. Two rules
// keep trust ahead of use: a new CA signs only after its bundle has had time to
// reach every pod (Authority), and an old CA's bundle stays until every leaf it
// signed has expired (PlanBundles).
package identity
