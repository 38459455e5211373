// Package metricsauth builds the manager's metrics server settings from its
// flags, as kubebuilder v4 scaffolds them: HTTPS, and every request
// authenticated (TokenReview) and authorized (SubjectAccessReview, `get` on the
// non-resource URL /metrics) by the API server through controller-runtime's
// filters.WithAuthenticationAndAuthorization.
//
// The manager's ServiceAccount needs config/rbac/metrics_auth_role.yaml (create
// tokenreviews and subjectaccessreviews); a scraper needs
// config/rbac/metrics_reader_role.yaml (get /metrics).
package metricsauth

import (
	"crypto/tls"
	"flag"

	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// DefaultBindAddress is where the manager serves its metrics unless told otherwise:
// kubebuilder's HTTPS metrics port.
const DefaultBindAddress = ":8443"

// Flags are the manager's metrics flags.
type Flags struct {
	// BindAddress is --metrics-bind-address; "0" turns the metrics server off.
	BindAddress string
	// Secure is --metrics-secure: HTTPS with authentication and authorization.
	// False serves plain, unauthenticated HTTP.
	Secure bool
	// CertDir is --metrics-cert-path, the directory of the serving certificate
	// and key (CertName, KeyName), which controller-runtime reloads when they
	// change. Empty, or a directory without both files: a self-signed
	// certificate generated in memory at start-up.
	CertDir, CertName, KeyName string
	// EnableHTTP2 is --enable-http2. Off by default, as kubebuilder scaffolds it:
	// HTTP/2 Stream Cancellation and Rapid Reset (CVE-2023-44487, CVE-2023-39325).
	EnableHTTP2 bool
}

// BindFlags defines the metrics flags, kubebuilder's, on fs.
func BindFlags(fs *flag.FlagSet, f *Flags) {
	fs.StringVar(&f.BindAddress, "metrics-bind-address", DefaultBindAddress,
		"The address the metrics endpoint binds to; \"0\" disables it.")
	fs.BoolVar(&f.Secure, "metrics-secure", true,
		"Serve metrics over HTTPS, only to clients whose bearer token the API server authenticates and authorizes "+
			"for get on /metrics (a ServiceAccount bound to the metrics-reader ClusterRole). "+
			"--metrics-secure=false serves plain HTTP to anyone.")
	fs.StringVar(&f.CertDir, "metrics-cert-path", "",
		"The directory of the metrics server's certificate and key, reloaded when they change; empty: a self-signed certificate.")
	fs.StringVar(&f.CertName, "metrics-cert-name", "tls.crt", "The metrics server's certificate file in --metrics-cert-path.")
	fs.StringVar(&f.KeyName, "metrics-cert-key", "tls.key", "The metrics server's key file in --metrics-cert-path.")
	fs.BoolVar(&f.EnableHTTP2, "enable-http2", false,
		"Serve HTTP/2 on the metrics endpoint. Off: HTTP/2 Stream Cancellation and Rapid Reset (CVE-2023-44487, CVE-2023-39325).")
}

// ServerOptions are the metrics server settings main.go gives the manager.
func ServerOptions(f Flags) metricsserver.Options {
	o := metricsserver.Options{
		BindAddress:   f.BindAddress,
		SecureServing: f.Secure,
		CertDir:       f.CertDir,
		CertName:      f.CertName,
		KeyName:       f.KeyName,
	}
	if !f.Secure {
		return o
	}
	o.FilterProvider = filters.WithAuthenticationAndAuthorization
	if !f.EnableHTTP2 {
		o.TLSOpts = append(o.TLSOpts, func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} })
	}
	return o
}
