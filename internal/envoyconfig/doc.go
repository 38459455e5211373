// Package envoyconfig turns one MeshService, with everything it references already
// resolved, into the three files its Envoy sidecar loads: the bootstrap (envoy.yaml)
// and the file-based LDS and CDS responses (lds.yaml, cds.yaml).
//
// Everything here is a pure function of its inputs, so the controller can call it on
// every reconcile and the tests can pin its output with golden files. Config is built
// as typed go-control-plane protos and validated before it is rendered, so an invalid
// spec surfaces as an error the controller reports instead of a NACK inside a pod.
package envoyconfig
