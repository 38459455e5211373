package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"math"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/envoymesh/envoymesh-operator/internal/envoyadmin"
	"github.com/envoymesh/envoymesh-operator/internal/objects"
)

func configMap(version string) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "a-envoy"},
		Data: map[string]string{
			"lds.yaml": "version_info: " + version + "\nresources: []\n",
			"cds.yaml": "version_info: " + version + "\nresources:\n- name: local_app\n- name: out.b.ns\n",
		},
	}
}

func TestParseConfigAndHosts(t *testing.T) {
	version, clusters := parseConfig(configMap("v1"))
	if version != "v1" || len(clusters) != 2 || clusters[1] != "out.b.ns" {
		t.Fatalf("parseConfig = %q, %v", version, clusters)
	}
	got := hosts(clusters, map[string]int{"ns/b": 3})
	if got[0].Hosts != 1 || got[1].Hosts != 3 || got[1].Healthy != 3 {
		t.Fatalf("hosts = %+v", got)
	}
}

// TestStepLoadsAfterDelayAndRejects follows one sidecar through a first load, a
// delayed update, a rejected update and the fault being cleared. The double's clock
// is the test's: the delay has passed exactly when the test moves the clock past it,
// so no sleep decides anything.
func TestStepLoadsAfterDelayAndRejects(t *testing.T) {
	const delay = 50 * time.Millisecond
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	d := &double{delay: delay, now: func() time.Time { return clock }, sidecars: map[string]*sidecar{}, faults: map[string]string{}}
	s := &sidecar{key: "ns/a-1/uid", owner: "ns/a", addr: "127.0.0.1:0", configMap: "a-envoy"}
	defer s.closeStatus()
	cm := configMap("v1")
	get := func(string, string) (*corev1.ConfigMap, error) { return cm, nil }

	d.step(s, get, nil)
	if s.loaded != "v1" {
		t.Fatalf("first version not loaded at once: %q", s.loaded)
	}
	cm = configMap("v2")
	d.step(s, get, nil)
	if s.loaded != "v1" {
		t.Fatalf("v2 loaded before the propagation delay")
	}
	clock = clock.Add(delay - time.Nanosecond)
	d.step(s, get, nil)
	if s.loaded != "v1" {
		t.Fatalf("v2 loaded %v before the propagation delay ends", time.Nanosecond)
	}
	clock = clock.Add(time.Nanosecond)
	d.step(s, get, nil)
	if s.loaded != "v2" {
		t.Fatalf("v2 not loaded after the delay: %q", s.loaded)
	}

	d.faults["ns/a"] = faultReject
	cm = configMap("v3")
	d.step(s, get, nil)
	if s.loaded != "v2" || s.rejected != 0 {
		t.Fatalf("reject before the delay: loaded %q, rejected %d; want v2, 0", s.loaded, s.rejected)
	}
	clock = clock.Add(delay)
	d.step(s, get, nil)
	d.step(s, get, nil)
	if s.loaded != "v2" || s.rejected != 1 {
		t.Fatalf("reject: loaded %q, rejected %d; want v2, 1", s.loaded, s.rejected)
	}
	delete(d.faults, "ns/a")
	d.step(s, get, nil)
	if s.loaded != "v3" {
		t.Fatalf("after clearing the fault: loaded %q, want v3", s.loaded)
	}
}

// leafPEM returns a PEM CERTIFICATE block of a certificate for uri expiring at notAfter, signed
// by itself (the double reads only NotAfter and the URI SANs).
func leafPEM(t *testing.T, uri string, notAfter time.Time) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: notAfter.Add(-24 * time.Hour), NotAfter: notAfter}
	if uri != "" {
		u, err := url.Parse(uri)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = []*url.URL{u}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// keyPEM is a PKCS#8 private key block, as the credential bundle starts with.
func keyPEM(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

const spiffeA = "spiffe://cluster.local/ns/ns/sa/a"

func TestLeafCertificate(t *testing.T) {
	leafExpiry := time.Date(2026, 3, 3, 8, 13, 5, 0, time.UTC)
	leaf := leafPEM(t, spiffeA, leafExpiry)
	ca := leafPEM(t, "", leafExpiry.AddDate(10, 0, 0))
	for _, tc := range []struct {
		name    string
		bundle  []byte
		want    time.Time
		wantErr string
	}{
		{"key, leaf, then the CA", slices.Concat(keyPEM(t), leaf, ca), leafExpiry, ""},
		{"leaf alone", leaf, leafExpiry, ""},
		{"text around the blocks", slices.Concat([]byte("issued by the signer\n"), keyPEM(t), []byte("\n"), leaf), leafExpiry, ""},
		{"key only", keyPEM(t), time.Time{}, "no CERTIFICATE block"},
		{"empty", nil, time.Time{}, "no CERTIFICATE block"},
		{"not PEM", []byte("garbage"), time.Time{}, "no CERTIFICATE block"},
		{"a CERTIFICATE block that is not one", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("x")}), time.Time{}, "x509"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, sans, err := leafCertificate(tc.bundle)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !got.Equal(tc.want) || !slices.Equal(sans, []string{spiffeA}) {
				t.Errorf("got %v %v, want %v [%s]", got, sans, tc.want, spiffeA)
			}
		})
	}
}

// writeBundle writes a credential bundle where the kubelet double puts pod uid's, with the given
// modification time (so a rewrite is seen even within the file system's time granularity).
func writeBundle(t *testing.T, dir, uid string, bundle []byte, mtime time.Time) {
	t.Helper()
	path := bundlePath(dir, uid)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, bundle, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

// TestStepServesTheKubeletsCertificate: /certs reports the Pod Certificate the kubelet double
// wrote, follows a rotation, and answers 404 without one.
func TestStepServesTheKubeletsCertificate(t *testing.T) {
	dir := t.TempDir()
	if got := bundlePath(dir, "uid-1"); got != filepath.Join(dir, "uid-1/volumes/kubernetes.io~projected/envoy-identity/bundle.pem") {
		t.Fatalf("bundlePath = %s, not where the kubelet double writes", got)
	}
	d := &double{kubeletDir: dir, sidecars: map[string]*sidecar{}, faults: map[string]string{}}
	s := &sidecar{key: "ns/a-1/uid-1", owner: "ns/a", uid: "uid-1", identity: true, addr: "127.0.0.1:0", configMap: "a-envoy"}
	get := func(string, string) (*corev1.ConfigMap, error) { return configMap("v1"), nil }
	d.step(s, get, nil)
	defer s.closeStatus()
	certs := func() envoyadmin.Certificate {
		t.Helper()
		c, err := envoyadmin.NewClient(nil, 0).Certs(context.Background(), s.statusURL())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if got := certs(); !got.Expiry.IsZero() {
		t.Fatalf("before the kubelet wrote a bundle: %+v, want no certificate", got)
	}

	first := time.Date(2026, 3, 3, 8, 13, 5, 0, time.UTC)
	mtime := time.Now()
	writeBundle(t, dir, "uid-1", slices.Concat(keyPEM(t), leafPEM(t, spiffeA, first)), mtime)
	d.step(s, get, nil)
	if got := certs(); !got.Expiry.Equal(first) || !slices.Equal(got.URISANs, []string{spiffeA}) {
		t.Errorf("after the bundle was written: %+v, want %v for %s", got, first, spiffeA)
	}

	rotated := first.Add(12 * time.Hour)
	writeBundle(t, dir, "uid-1", slices.Concat(keyPEM(t), leafPEM(t, spiffeA, rotated)), mtime.Add(time.Second))
	d.step(s, get, nil)
	if got := certs(); !got.Expiry.Equal(rotated) {
		t.Errorf("after rotation: expiry %v, want %v", got.Expiry, rotated)
	}

	writeBundle(t, dir, "uid-1", []byte("torn"), mtime.Add(2*time.Second))
	d.step(s, get, nil)
	if got := certs(); !got.Expiry.IsZero() {
		t.Errorf("after an unparsable bundle: %+v, want no certificate", got)
	}

	if err := os.Remove(bundlePath(dir, "uid-1")); err != nil {
		t.Fatal(err)
	}
	d.step(s, get, nil)
	if got := certs(); !got.Expiry.IsZero() {
		t.Errorf("after the bundle was removed: %+v, want no certificate", got)
	}
}

// TestStepWithoutKubeletDirOrIdentity: no --kubelet-dir, or a pod without the identity volume (a
// mesh with mTLS Disabled), has no certificate even if a bundle lies where it would be.
func TestStepWithoutKubeletDirOrIdentity(t *testing.T) {
	dir := t.TempDir()
	writeBundle(t, dir, "uid-1", leafPEM(t, spiffeA, time.Now().Add(time.Hour)), time.Now())
	get := func(string, string) (*corev1.ConfigMap, error) { return configMap("v1"), nil }
	for _, tc := range []struct {
		name       string
		kubeletDir string
		identity   bool
	}{
		{"no kubelet dir", "", true},
		{"no identity volume", dir, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &double{kubeletDir: tc.kubeletDir, sidecars: map[string]*sidecar{}, faults: map[string]string{}}
			s := &sidecar{key: "ns/a-1/uid-1", owner: "ns/a", uid: "uid-1", identity: tc.identity, addr: "127.0.0.1:0", configMap: "a-envoy"}
			d.step(s, get, nil)
			defer s.closeStatus()
			got, err := envoyadmin.NewClient(nil, 0).Certs(context.Background(), s.statusURL())
			if err != nil || !got.Expiry.IsZero() {
				t.Errorf("Certs = %+v, %v; want no certificate", got, err)
			}
		})
	}
}

func TestHasIdentity(t *testing.T) {
	p := &corev1.Pod{Spec: corev1.PodSpec{Volumes: []corev1.Volume{{Name: objects.ConfigVolumeName}}}}
	if hasIdentity(p) {
		t.Error("a pod with only the config volume has an identity")
	}
	p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: objects.IdentityVolumeName})
	if !hasIdentity(p) {
		t.Error("a pod with the identity volume has none")
	}
}

// TestDenialsEndpoint drives PUT /denials and checks what the sidecars' /stats then report.
func TestDenialsEndpoint(t *testing.T) {
	d := &double{sidecars: map[string]*sidecar{}, faults: map[string]string{}}
	a1 := &sidecar{key: "ns/a-1/u1", owner: "ns/a", addr: "127.0.0.1:0", configMap: "a-envoy"}
	a2 := &sidecar{key: "ns/a-2/u2", owner: "ns/a", addr: "127.0.0.1:0", configMap: "a-envoy"}
	b1 := &sidecar{key: "ns/b-1/u3", owner: "ns/b", addr: "127.0.0.1:0", configMap: "b-envoy"}
	other := &sidecar{key: "other/a-1/u4", owner: "other/a", addr: "127.0.0.1:0", configMap: "a-envoy"}
	all := []*sidecar{a1, a2, b1, other}
	for _, s := range all {
		d.sidecars[s.key] = s
	}
	h := d.controlHandler()
	put := func(target string) int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPut, target, nil))
		return rec.Code
	}
	for _, tc := range []struct {
		target string
		code   int
	}{
		{"/denials/ns/a?count=3", http.StatusNoContent},
		{"/denials/ns/a?count=2&mode=enforce", http.StatusNoContent},
		{"/denials/ns/a?count=4&mode=audit", http.StatusNoContent},
		{"/denials/ns/b?count=1", http.StatusNoContent},
		{"/denials/ns/ghost?count=1", http.StatusNotFound},
		{"/denials/ns/a", http.StatusBadRequest},
		{"/denials/ns/a?count=0", http.StatusBadRequest},
		{"/denials/ns/a?count=-1", http.StatusBadRequest},
		{"/denials/ns/a?count=many", http.StatusBadRequest},
		{"/denials/ns/a?count=1&mode=off", http.StatusBadRequest},
	} {
		if code := put(tc.target); code != tc.code {
			t.Errorf("PUT %s: status %d, want %d", tc.target, code, tc.code)
		}
	}

	get := func(string, string) (*corev1.ConfigMap, error) { return configMap("v1"), nil }
	want := map[*sidecar][2]uint64{a1: {5, 4}, a2: {5, 4}, b1: {1, 0}, other: {0, 0}}
	for _, s := range all {
		d.step(s, get, nil)
		defer s.closeStatus()
		st, err := envoyadmin.NewClient(nil, 0).Stats(context.Background(), s.statusURL())
		if err != nil {
			t.Fatal(err)
		}
		if got := [2]uint64{st.Denied, st.AuditDenied}; got != want[s] {
			t.Errorf("%s: denied, audit denied = %v, want %v", s.key, got, want[s])
		}
	}

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/sidecars", nil))
	var infos []SidecarInfo
	if err := json.NewDecoder(rec.Body).Decode(&infos); err != nil {
		t.Fatal(err)
	}
	if len(infos) != 4 || infos[0].Pod != "ns/a-1/u1" || infos[0].Denied != 5 || infos[0].AuditDenied != 4 || infos[0].CertificateExpiry != nil {
		t.Errorf("GET /sidecars = %+v, want ns/a-1 first with 5 denied, 4 audit denied and no certificate", infos)
	}
}

func TestAddDenialsSaturates(t *testing.T) {
	s := &sidecar{owner: "ns/a", denied: math.MaxUint64 - 1}
	d := &double{sidecars: map[string]*sidecar{"k": s}}
	if n := d.addDenials("ns/a", denyEnforce, 5); n != 1 || s.denied != math.MaxUint64 {
		t.Errorf("addDenials changed %d sidecars, denied = %d; want 1, MaxUint64", n, s.denied)
	}
}
