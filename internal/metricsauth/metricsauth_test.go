package metricsauth_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	certutil "k8s.io/client-go/util/cert"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/yaml"

	"github.com/envoymesh/envoymesh-operator/internal/metricsauth"
)

// knownMetric is a family every manager exports once it has talked to the API
// server, which it has by the time it authorizes a scrape (the TokenReview and
// the SubjectAccessReview are POSTs).
const knownMetric = "rest_client_requests_total"

// TestMetricsEndpoint runs a manager with main.go's metrics settings
// (metricsauth.ServerOptions with the flags' defaults) against a real
// kube-apiserver (envtest, RBAC on), as a ServiceAccount granted nothing but
// config/rbac/metrics_auth_role.yaml, and scrapes it: without a token or with a
// bad one 401, as a ServiceAccount without config/rbac/metrics_reader_role.yaml
// 403, with it 200 and the metrics. It is HTTPS only, and HTTP/1.1 only.
func TestMetricsEndpoint(t *testing.T) {
	ctrl.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	env := &envtest.Environment{}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("envtest: %v (is KUBEBUILDER_ASSETS set?)", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Logf("stopping envtest: %v", err)
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cs := kubernetes.NewForConfigOrDie(cfg)

	const ns = "envoymesh-system"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	authRole := installClusterRole(t, cs, "metrics_auth_role.yaml")
	readerRole := installClusterRole(t, cs, "metrics_reader_role.yaml")
	managerToken := serviceAccount(t, cs, ns, "controller-manager", authRole)
	readerToken := serviceAccount(t, cs, ns, "prometheus", readerRole)
	strangerToken := serviceAccount(t, cs, ns, "stranger", "")

	// The manager's own credentials are its ServiceAccount's token, as in a pod.
	managerCfg := rest.AnonymousClientConfig(cfg)
	managerCfg.BearerToken = managerToken
	defaults := flags(t)
	defaults.BindAddress = freeAddress(t)
	startManager(ctx, t, managerCfg, defaults)

	// The certificate is self-signed (no --metrics-cert-path): not verified here.
	c := httpsClient(&tls.Config{InsecureSkipVerify: true}) //nolint:gosec // the manager's self-signed certificate
	url := "https://" + defaults.BindAddress + "/metrics"
	waitServing(t, c, url)

	for _, tc := range []struct {
		name, token string
		want        int
	}{
		{"no token", "", http.StatusUnauthorized},
		// controller-runtime's filter answers 500 "Authentication failed" when the
		// TokenReview comes back with an error, which it does for a token that is
		// not one (or has expired): refused all the same (docs/observability.md).
		{"a token the API server does not know", "not-a-token", http.StatusInternalServerError},
		{"a ServiceAccount without metrics-reader", strangerToken, http.StatusForbidden},
		{"a ServiceAccount bound to metrics-reader", readerToken, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, proto, body := get(t, c, url, tc.token)
			if code != tc.want {
				t.Fatalf("GET /metrics: %d, want %d: %.300s", code, tc.want, body)
			}
			if proto != "HTTP/1.1" {
				t.Errorf("served over %s, want HTTP/1.1 (--enable-http2 is off)", proto)
			}
			if served := strings.Contains(body, "\n"+knownMetric+"{"); served != (tc.want == http.StatusOK) {
				t.Errorf("body has %s: %v, want %v: %.300s", knownMetric, served, tc.want == http.StatusOK, body)
			}
		})
	}

	t.Run("plain HTTP is not served", func(t *testing.T) {
		req, err := http.NewRequest(http.MethodGet, "http://"+defaults.BindAddress+"/metrics", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+readerToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return // the TLS server hung up on it
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusBadRequest || strings.Contains(string(b), knownMetric) {
			t.Errorf("plain HTTP: %d %.300s, want the TLS server's 400", resp.StatusCode, b)
		}
	})

	// --metrics-cert-path: the certificate given is served, so a scraper can
	// verify it against its CA instead of skipping verification.
	t.Run("--metrics-cert-path", func(t *testing.T) {
		dir := t.TempDir()
		certPEM, keyPEM, err := certutil.GenerateSelfSignedCertKey("envoymesh-controller-manager-metrics-service.envoymesh-system.svc",
			[]net.IP{net.IPv4(127, 0, 0, 1)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		for name, b := range map[string][]byte{"tls.crt": certPEM, "tls.key": keyPEM} {
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		pinned := flags(t, "--metrics-bind-address="+freeAddress(t), "--metrics-cert-path="+dir)
		startManager(ctx, t, managerCfg, pinned)
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(certPEM) {
			t.Fatal("no certificate in the PEM")
		}
		// A cert-manager issued certificate would be verified the same way, against its CA.
		c := httpsClient(&tls.Config{RootCAs: pool, ServerName: "envoymesh-controller-manager-metrics-service.envoymesh-system.svc"})
		url := "https://" + pinned.BindAddress + "/metrics"
		waitServing(t, c, url)
		if code, _, body := get(t, c, url, readerToken); code != http.StatusOK || !strings.Contains(body, knownMetric) {
			t.Errorf("GET /metrics with the pinned CA: %d %.300s", code, body)
		}
		if code, _, _ := get(t, c, url, ""); code != http.StatusUnauthorized {
			t.Errorf("GET /metrics without a token: %d, want 401", code)
		}
	})
}

// TestServerOptions: the default is HTTPS at :8443 with the filter and HTTP/2
// off; --enable-http2 keeps HTTP/2; --metrics-secure=false is plain HTTP with no filter.
func TestServerOptions(t *testing.T) {
	secure := metricsauth.ServerOptions(flags(t))
	if !secure.SecureServing || secure.FilterProvider == nil || len(secure.TLSOpts) != 1 || secure.BindAddress != ":8443" {
		t.Errorf("defaults: SecureServing %v, filter %v, %d TLS options, address %q; want HTTPS with the filter, HTTP/2 off, :8443",
			secure.SecureServing, secure.FilterProvider != nil, len(secure.TLSOpts), secure.BindAddress)
	}
	if o := metricsauth.ServerOptions(flags(t, "--enable-http2")); len(o.TLSOpts) != 0 {
		t.Errorf("--enable-http2: %d TLS options, want none", len(o.TLSOpts))
	}
	if o := metricsauth.ServerOptions(flags(t, "--metrics-secure=false")); o.SecureServing || o.FilterProvider != nil {
		t.Errorf("--metrics-secure=false: SecureServing %v, filter %v; want plain HTTP, no filter", o.SecureServing, o.FilterProvider != nil)
	}
}

// flags parses args as main.go does (metricsauth.BindFlags); none gives its defaults.
func flags(t *testing.T, args ...string) metricsauth.Flags {
	t.Helper()
	var f metricsauth.Flags
	fs := flag.NewFlagSet("manager", flag.ContinueOnError)
	metricsauth.BindFlags(fs, &f)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return f
}

func startManager(ctx context.Context, t *testing.T, cfg *rest.Config, f metricsauth.Flags) {
	t.Helper()
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Metrics:                metricsauth.ServerOptions(f),
		HealthProbeBindAddress: "0",
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	})
}

// installClusterRole creates the ClusterRole of config/rbac/<file> as shipped.
func installClusterRole(t *testing.T, cs kubernetes.Interface, file string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "config", "rbac", file))
	if err != nil {
		t.Fatal(err)
	}
	var role rbacv1.ClusterRole
	if err := yaml.UnmarshalStrict(b, &role); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if _, err := cs.RbacV1().ClusterRoles().Create(context.Background(), &role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return role.Name
}

// serviceAccount creates a ServiceAccount, binds it to clusterRole (unless
// empty) and returns a token for it.
func serviceAccount(t *testing.T, cs kubernetes.Interface, ns, name, clusterRole string) string {
	t.Helper()
	ctx := context.Background()
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if clusterRole != "" {
		if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: name + "-" + clusterRole},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: clusterRole},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: name}},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token
}

func freeAddress(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// httpsClient offers HTTP/2 as well, so a server that accepted it would use it.
func httpsClient(tc *tls.Config) *http.Client {
	return &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true},
	}
}

// waitServing waits until the metrics server answers at all.
func waitServing(t *testing.T, c *http.Client, url string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
			return
		}
		var op *net.OpError
		if time.Now().After(deadline) || !errors.As(err, &op) {
			t.Fatalf("metrics server not serving at %s: %v", url, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func get(t *testing.T, c *http.Client, url, token string) (code int, proto, body string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(fmt.Errorf("reading the response: %w", err))
	}
	return resp.StatusCode, resp.Proto, string(b)
}
