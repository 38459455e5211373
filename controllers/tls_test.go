package controllers

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	clocktesting "k8s.io/utils/clock/testing"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
	"github.com/envoymesh/envoymesh-operator/internal/envoyconfig"
	"github.com/envoymesh/envoymesh-operator/internal/identity"
	"github.com/envoymesh/envoymesh-operator/internal/kubeletdouble"
	"github.com/envoymesh/envoymesh-operator/internal/objects"
)

// No golden file can show that the certificates the signer issues and the config
// the operator renders agree. These specs do, without an Envoy: the kubelet double
// fetches real Pod Certificates for a caller, its callees and a stranger; the
// callees' inbound TLS and RBAC and the caller's egress clusters are read back
// from the ConfigMaps on the API server (envoyconfig.ParseRendered, then
// InboundTLS and UpstreamTLS); and Go crypto/tls peers configured from exactly
// that, and the files the pods would mount, meet over loopback.
var _ = Describe("Real TLS: the signed certificates and the rendered config agree", Ordered, ContinueOnFailure, func() {
	var (
		ns      string
		node    *corev1.Node
		kubelet *kubeletdouble.Kubelet
		pods    = map[string]*corev1.Pod{}
		ids     = map[string]string{} // SPIFFE ID of each MeshService, from its status

		// The callees' inbound listeners and the caller's clusters to them.
		calleeIn, storeIn *envoyconfig.InboundTLSInfo
		toCallee, toStore *envoyconfig.UpstreamTLSInfo
	)

	BeforeAll(func() {
		SetDefaultEventuallyTimeout(20 * time.Second)
		SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
		ns = newNamespace()
		node = &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-" + ns}}
		Expect(k8sClient.Create(ctx, node)).To(Succeed())
		DeferCleanup(func() { Expect(k8sClient.Delete(ctx, node)).To(Succeed()) })
		kubelet = kubeletdouble.New(kubeletdouble.Options{
			Client: kubernetes.NewForConfigOrDie(cfg), NodeName: node.Name, NodeUID: node.UID,
			Dir: GinkgoT().TempDir(), Clock: clocktesting.NewFakeClock(time.Now()), Logger: GinkgoLogr,
		})
		kctx, stop := context.WithCancel(ctx)
		DeferCleanup(stop)
		go func() {
			defer GinkgoRecover()
			Expect(kubelet.Run(kctx)).To(Succeed())
		}()

		By("declaring the call graph in the default mesh (Strict, Enforce): caller → callee (HTTP) and store (TCP); stranger calls nobody")
		callee := meshService(ns, "callee", 8080, 15006)
		callee.Spec.Protocol = meshv1alpha1.ProtocolHTTP
		store := meshService(ns, "store", 6379, 16379)
		store.Spec.Protocol = meshv1alpha1.ProtocolTCP
		caller := meshService(ns, "caller", 8080, 15006,
			meshv1alpha1.Upstream{Name: "callee", LocalPort: 9001}, meshv1alpha1.Upstream{Name: "store", LocalPort: 9002})
		stranger := meshService(ns, "stranger", 8080, 15006)
		for _, ms := range []*meshv1alpha1.MeshService{callee, store, caller, stranger} {
			Expect(k8sClient.Create(ctx, ms)).To(Succeed())
		}
		for _, name := range []string{"callee", "store", "caller", "stranger"} {
			Eventually(func() string {
				if id := getMeshService(ns, name).Status.Identity; id != nil {
					return id.SPIFFEID
				}
				return ""
			}).ShouldNot(BeEmpty(), name)
			ids[name] = getMeshService(ns, name).Status.Identity.SPIFFEID
			Expect(ids[name]).To(Equal(identity.SPIFFEID("cluster.local", ns, name)))
		}

		By("running one pod of each from the operator's Deployment, and waiting for the signer to issue its certificate")
		for _, name := range []string{"callee", "store", "caller", "stranger"} {
			dep := &appsv1.Deployment{}
			Eventually(get(dep, ns, name)).Should(Not(BeNil()))
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-1", Labels: dep.Spec.Template.Labels},
				Spec:       *dep.Spec.Template.Spec.DeepCopy(),
			}
			pod.Spec.NodeName = node.Name
			Expect(k8sClient.Create(ctx, pod)).To(Succeed())
			pods[name] = pod
		}
		for name, pod := range pods {
			Eventually(func() kubeletdouble.Phase { return kubelet.State(pod.UID, objects.IdentityVolumeName).Phase }).
				Should(Equal(kubeletdouble.PhaseIssued), name)
		}

		By("reading the callees' inbound TLS and RBAC and the caller's clusters from the ConfigMaps the operator wrote")
		inbound := func(name string) func(Gomega) *envoyconfig.InboundTLSInfo {
			return func(g Gomega) *envoyconfig.InboundTLSInfo {
				info, err := envoyconfig.InboundTLS(parsedEnvoyConfig(g, ns, name))
				g.Expect(err).NotTo(HaveOccurred())
				return info
			}
		}
		// The policy follows the caller's declaration, so wait for it to name the caller.
		Eventually(func(g Gomega) []string { return inbound("callee")(g).Principals }).Should(Equal([]string{ids["caller"]}))
		Eventually(func(g Gomega) []string { return inbound("store")(g).Principals }).Should(Equal([]string{ids["caller"]}))
		calleeIn, storeIn = inbound("callee")(Default), inbound("store")(Default)
		upstream := func(name string) func(Gomega) *envoyconfig.UpstreamTLSInfo {
			return func(g Gomega) *envoyconfig.UpstreamTLSInfo {
				info, err := envoyconfig.UpstreamTLS(parsedEnvoyConfig(g, ns, "caller"), envoyconfig.UpstreamClusterName(name, ns))
				g.Expect(err).NotTo(HaveOccurred())
				return info
			}
		}
		Eventually(upstream("callee")).ShouldNot(BeNil())
		Eventually(upstream("store")).ShouldNot(BeNil())
		toCallee, toStore = upstream("callee")(Default), upstream("store")(Default)
	})

	It("renders what the default mesh promises: client certificates required, Enforce on the declared caller, the exact SPIFFE ID and SNI of each callee", func() {
		for _, in := range []*envoyconfig.InboundTLSInfo{calleeIn, storeIn} {
			Expect(in.RequireClientCert).To(BeTrue())
			Expect(in.Authorization).To(Equal(meshv1alpha1.AuthorizationEnforce))
			Expect(in.Principals).To(Equal([]string{ids["caller"]}))
			Expect(in.MatchALPN).To(BeNil(), "Strict: every TLS connection reaches the mTLS chain")
			Expect(in.PlaintextFallback).To(BeFalse(), "Strict: no plaintext chain")
		}
		Expect(calleeIn.HandshakeSANs).To(BeEmpty(), "HTTP authorizes after the handshake")
		Expect(storeIn.HandshakeSANs).To(Equal([]string{ids["caller"]}), "TCP in Enforce refuses others at the handshake")

		Expect(toCallee.RequiredSAN).To(Equal(ids["callee"]))
		Expect(toCallee.SNI).To(Equal("callee." + ns + ".svc.cluster.local"))
		Expect(toStore.RequiredSAN).To(Equal(ids["store"]))
		Expect(toStore.SNI).To(Equal("store." + ns + ".svc.cluster.local"))

		By("naming files in the directory each pod mounts its identity volume at, which the kubelet fills")
		for _, f := range []string{calleeIn.CertFile, calleeIn.KeyFile, calleeIn.TrustFile, toCallee.CertFile, toCallee.KeyFile, toCallee.TrustFile,
			storeIn.CertFile, storeIn.KeyFile, storeIn.TrustFile, toStore.CertFile, toStore.KeyFile, toStore.TrustFile} {
			Expect(filepath.Dir(f)).To(Equal(envoyconfig.IdentityDir), f)
		}
		Expect(filepath.Base(calleeIn.CertFile)).To(Equal(envoyconfig.CredentialBundleFile))
		Expect(filepath.Base(calleeIn.TrustFile)).To(Equal(envoyconfig.TrustBundleFile))
		for name, pod := range pods {
			for _, f := range []string{calleeIn.CertFile, calleeIn.KeyFile, calleeIn.TrustFile} {
				_, err := os.Stat(identityFile(kubelet, pod, f))
				Expect(err).NotTo(HaveOccurred(), "%s: %s", name, f)
			}
		}
	})

	// Each case runs in TLS 1.2, what a cluster without tls_params negotiates
	// (Envoy's client default maximum), and in TLS 1.3, which the listener also
	// accepts and where a client finishes its handshake before the server has
	// judged its certificate.
	versions := []uint16{tls.VersionTLS12, tls.VersionTLS13}

	It("lets the declared caller in: both sides verify each other, and the callee's RBAC admits it", func() {
		for _, v := range versions {
			By("HTTP in " + tls.VersionName(v))
			x := tlsMeet(inboundServer(kubelet, pods["callee"], calleeIn, true), clusterClient(kubelet, pods["caller"], toCallee, v))
			Expect(x.clientErr).NotTo(HaveOccurred())
			Expect(x.serverErr).NotTo(HaveOccurred())
			Expect(x.version).To(Equal(v))
			Expect(x.status).To(Equal(http.StatusOK))
			Expect(x.body).To(Equal("hello from the app"))
			Expect(x.clientSaw).To(Equal(ids["callee"]))
			Expect(x.serverSaw).To(Equal(ids["caller"]))
			Expect(x.alpn).To(Equal("http/1.1"), "the server selects the caller's application protocol, never the mesh marker")

			By("TCP in " + tls.VersionName(v) + ", where the handshake itself checks the caller")
			x = tlsMeet(inboundServer(kubelet, pods["store"], storeIn, false), clusterClient(kubelet, pods["caller"], toStore, v))
			Expect(x.clientErr).NotTo(HaveOccurred())
			Expect(x.serverErr).NotTo(HaveOccurred())
			Expect(x.version).To(Equal(v))
			Expect(x.body).To(Equal("ok\n"))
			Expect(x.clientSaw).To(Equal(ids["store"]))
			Expect(x.serverSaw).To(Equal(ids["caller"]))
			Expect(x.alpn).To(BeEmpty())
		}
	})

	It("refuses the stranger: 403 from HTTP RBAC after a valid handshake, and the handshake itself over TCP", func() {
		for _, v := range versions {
			By("HTTP in " + tls.VersionName(v))
			// The stranger dials as the caller's cluster would, with its own
			// certificate: a valid mesh identity that nobody declared.
			x := tlsMeet(inboundServer(kubelet, pods["callee"], calleeIn, true), clusterClient(kubelet, pods["stranger"], toCallee, v))
			Expect(x.serverErr).NotTo(HaveOccurred(), "its certificate chains to the mesh's anchors")
			Expect(x.clientErr).NotTo(HaveOccurred())
			Expect(x.serverSaw).To(Equal(ids["stranger"]))
			Expect(x.status).To(Equal(http.StatusForbidden))
			Expect(x.body).To(Equal("RBAC: access denied"))

			By("TCP in " + tls.VersionName(v))
			x = tlsMeet(inboundServer(kubelet, pods["store"], storeIn, false), clusterClient(kubelet, pods["stranger"], toStore, v))
			Expect(x.serverErr).To(MatchError(ContainSubstring("names " + ids["stranger"] + ", none of the required URI SANs [" + ids["caller"] + "]")))
			Expect(x.clientErr).To(HaveOccurred())
			Expect(x.body).To(BeEmpty())
		}
	})

	It("lets the caller refuse a callee that presents another service's certificate", func() {
		for _, v := range versions {
			for _, impostor := range []string{"stranger", "store"} {
				By("the " + impostor + "'s certificate in " + tls.VersionName(v))
				// The callee's listener as rendered, but with another pod's files.
				x := tlsMeet(inboundServer(kubelet, pods[impostor], calleeIn, true), clusterClient(kubelet, pods["caller"], toCallee, v))
				Expect(x.clientErr).To(MatchError(ContainSubstring("names " + ids[impostor] + ", none of the required URI SANs [" + ids["callee"] + "]")))
				Expect(x.serverErr).To(HaveOccurred())
				Expect(x.status).To(BeZero())
			}
		}
	})

	It("refuses a client without a certificate at the handshake", func() {
		for _, v := range versions {
			By(tls.VersionName(v))
			client := clusterClient(kubelet, pods["caller"], toCallee, v)
			client.Certificates = nil
			x := tlsMeet(inboundServer(kubelet, pods["callee"], calleeIn, true), client)
			Expect(x.serverErr).To(MatchError(ContainSubstring("didn't provide a certificate")))
			Expect(x.clientErr).To(HaveOccurred())
			Expect(x.status).To(BeZero())
		}
	})

	It("refuses certificates of another CA that claim the right SPIFFE IDs, on either side", func() {
		rogue, err := identity.GenerateCA("cluster.local", time.Now())
		Expect(err).NotTo(HaveOccurred())
		for _, v := range versions {
			By("a client claiming to be the caller, in " + tls.VersionName(v))
			client := clusterClient(kubelet, pods["caller"], toCallee, v)
			client.Certificates = []tls.Certificate{rogueLeaf(rogue, ids["caller"])}
			x := tlsMeet(inboundServer(kubelet, pods["callee"], calleeIn, true), client)
			Expect(x.serverErr).To(MatchError(ContainSubstring("certificate signed by unknown authority")))
			Expect(x.clientErr).To(HaveOccurred())
			Expect(x.status).To(BeZero())

			By("a server claiming to be the callee, in " + tls.VersionName(v))
			server := inboundServer(kubelet, pods["callee"], calleeIn, true)
			server.cfg.Certificates = []tls.Certificate{rogueLeaf(rogue, ids["callee"])}
			x = tlsMeet(server, clusterClient(kubelet, pods["caller"], toCallee, v))
			Expect(x.clientErr).To(MatchError(ContainSubstring("certificate signed by unknown authority")))
			Expect(x.serverErr).To(HaveOccurred())
			Expect(x.status).To(BeZero())
		}
	})
})

// parsedEnvoyConfig reads a MeshService's ConfigMap from the API server and parses
// its files back into the Resources the sidecar would load.
func parsedEnvoyConfig(g Gomega, ns, name string) *envoyconfig.Resources {
	cm, err := get(&corev1.ConfigMap{}, ns, objects.ConfigMapName(getMeshService(ns, name)))()
	g.Expect(err).NotTo(HaveOccurred())
	res, err := envoyconfig.ParseRendered(cm.Data)
	g.Expect(err).NotTo(HaveOccurred())
	return res
}

// identityFile is where a path the sidecar's config names is on this machine: the
// identity volume's mount in the pod's spec (the sidecar's alone, checked to be
// envoyconfig.IdentityDir) maps to the volume directory the kubelet double
// writes. Only that prefix is mapped; the file name is the config's.
func identityFile(k *kubeletdouble.Kubelet, pod *corev1.Pod, path string) string {
	GinkgoHelper()
	var mounts []string
	// The sidecar is a native sidecar, an init container.
	for _, c := range slices.Concat(pod.Spec.InitContainers, pod.Spec.Containers) {
		for _, m := range c.VolumeMounts {
			if m.Name == objects.IdentityVolumeName {
				mounts = append(mounts, m.MountPath)
			}
		}
	}
	Expect(mounts).To(Equal([]string{envoyconfig.IdentityDir}), "the identity volume is mounted once, by the sidecar, where the config reads it")
	rel, err := filepath.Rel(mounts[0], path)
	Expect(err).NotTo(HaveOccurred())
	Expect(rel == ".." || strings.HasPrefix(rel, "../") || rel == ".").To(BeFalse(), "%s is not a file in the identity volume", path)
	return filepath.Join(k.VolumeDir(pod.UID, objects.IdentityVolumeName), rel)
}

func readIdentityFile(k *kubeletdouble.Kubelet, pod *corev1.Pod, path string) []byte {
	GinkgoHelper()
	data, err := os.ReadFile(identityFile(k, pod, path))
	Expect(err).NotTo(HaveOccurred())
	return data
}

// podKeyPair is the identity a sidecar of pod presents: its chain and its key, read
// from the files the config names (the same file, key first).
func podKeyPair(k *kubeletdouble.Kubelet, pod *corev1.Pod, certFile, keyFile string) tls.Certificate {
	GinkgoHelper()
	cert, err := tls.X509KeyPair(readIdentityFile(k, pod, certFile), readIdentityFile(k, pod, keyFile))
	Expect(err).NotTo(HaveOccurred())
	return cert
}

func podTrustPool(k *kubeletdouble.Kubelet, pod *corev1.Pod, trustFile string) *x509.CertPool {
	GinkgoHelper()
	pool := x509.NewCertPool()
	Expect(pool.AppendCertsFromPEM(readIdentityFile(k, pod, trustFile))).To(BeTrue(), "no certificate in %s", trustFile)
	return pool
}

// verifySPIFFEPeer is Envoy's default certificate validator configured by a
// validation context with match_typed_subject_alt_names of exact URI SANs: the
// chain must verify against the trusted CA file, and the leaf must carry one of
// sans (none: any name). It does not look at DNS names or the SNI, which is
// why the client below does its own verification. Go also checks the extended
// key usage, stricter than Envoy's default; the signer's leaves carry both.
func verifySPIFFEPeer(certs []*x509.Certificate, roots *x509.CertPool, usage x509.ExtKeyUsage, sans []string) error {
	if len(certs) == 0 {
		return errors.New("no peer certificate")
	}
	intermediates := x509.NewCertPool()
	for _, c := range certs[1:] {
		intermediates.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: intermediates, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		return err
	}
	return requireURISAN(certs[0], sans)
}

// requireURISAN is the match_typed_subject_alt_names check alone: leaf must carry
// one of the exact URI SANs sans, or sans is empty.
func requireURISAN(leaf *x509.Certificate, sans []string) error {
	if len(sans) == 0 {
		return nil
	}
	names := leafURISANs(leaf)
	for _, n := range names {
		if slices.Contains(sans, n) {
			return nil
		}
	}
	return fmt.Errorf("certificate names %s, none of the required URI SANs %v", strings.Join(names, " "), sans)
}

func leafURISANs(c *x509.Certificate) []string {
	var out []string
	for _, u := range c.URIs {
		out = append(out, u.String())
	}
	return out
}

// tlsSidecar is a sidecar's inbound mTLS chain, answering for its app: HTTP/1.1
// as the HTTP RBAC filter and the app would, or for TCP "ok" when the network
// RBAC filter lets the connection through.
type tlsSidecar struct {
	cfg    *tls.Config
	info   *envoyconfig.InboundTLSInfo
	isHTTP bool
}

// inboundServer is the inbound chain as info describes it, presenting the
// identity of pod: a client certificate that chains to the trust file (and,
// with HandshakeSANs, names one of them) at the handshake, then RBAC on the
// client's URI SAN.
func inboundServer(k *kubeletdouble.Kubelet, pod *corev1.Pod, info *envoyconfig.InboundTLSInfo, isHTTP bool) *tlsSidecar {
	GinkgoHelper()
	cfg := &tls.Config{
		Certificates: []tls.Certificate{podKeyPair(k, pod, info.CertFile, info.KeyFile)},
		ClientCAs:    podTrustPool(k, pod, info.TrustFile),
		ClientAuth:   tls.VerifyClientCertIfGiven,
		NextProtos:   info.ServerALPN,
		MinVersion:   tls.VersionTLS12,
	}
	if info.RequireClientCert {
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	if len(info.HandshakeSANs) > 0 {
		// Go has verified the chain against ClientCAs when this runs.
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("no client certificate")
			}
			return requireURISAN(cs.PeerCertificates[0], info.HandshakeSANs)
		}
	}
	return &tlsSidecar{cfg: cfg, info: info, isHTTP: isHTTP}
}

// authorized is the RBAC filter as read: Enforce admits a principal_name exact
// match on a URI SAN of the client's certificate; Audit and Off let everyone in.
func (s *tlsSidecar) authorized(cs tls.ConnectionState) bool {
	if s.info.Authorization != meshv1alpha1.AuthorizationEnforce {
		return true
	}
	if len(cs.PeerCertificates) == 0 {
		return false
	}
	for _, n := range leafURISANs(cs.PeerCertificates[0]) {
		if slices.Contains(s.info.Principals, n) {
			return true
		}
	}
	return false
}

// clusterClient is the caller's cluster as info describes it, with the identity
// and trust of pod. Go checks a server's certificate against ServerName as a DNS
// name, and SPIFFE leaves carry no DNS SANs, so Go's own verification is off and
// VerifyConnection does what Envoy's validation context does instead: the full
// chain against the trust file, then the exact URI SAN. ServerName still sends
// the SNI. It speaks only the TLS version given.
func clusterClient(k *kubeletdouble.Kubelet, pod *corev1.Pod, info *envoyconfig.UpstreamTLSInfo, version uint16) *tls.Config {
	GinkgoHelper()
	roots := podTrustPool(k, pod, info.TrustFile)
	return &tls.Config{
		Certificates:       []tls.Certificate{podKeyPair(k, pod, info.CertFile, info.KeyFile)},
		RootCAs:            roots,
		ServerName:         info.SNI,
		NextProtos:         info.ALPN,
		MinVersion:         version,
		MaxVersion:         version,
		InsecureSkipVerify: true, // replaced, not skipped: see VerifyConnection
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifySPIFFEPeer(cs.PeerCertificates, roots, x509.ExtKeyUsageServerAuth, []string{info.RequiredSAN})
		},
	}
}

// rogueLeaf is a certificate for spiffeID from ca, shaped like the signer's.
func rogueLeaf(ca *identity.CA, spiffeID string) tls.Certificate {
	GinkgoHelper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	Expect(err).NotTo(HaveOccurred())
	leaf, err := ca.Issue(key.Public(), spiffeID, identity.MaxLeafLifetime, time.Now())
	Expect(err).NotTo(HaveOccurred())
	return tls.Certificate{Certificate: [][]byte{leaf.Cert.Raw}, PrivateKey: key, Leaf: leaf.Cert}
}

// tlsExchange is what each side of one connection saw.
type tlsExchange struct {
	serverErr error  // the server's handshake
	clientErr error  // the client's handshake, or its request and the answer
	status    int    // the HTTP answer's status, 0 without one
	body      string // the HTTP answer's body, or what a TCP server wrote
	alpn      string // negotiated, as the client saw it
	version   uint16 // negotiated, as the client saw it
	// clientSaw and serverSaw are the URI SANs of the peer's leaf.
	clientSaw, serverSaw string
}

// tlsMeet runs one connection from client to s over loopback: the handshake, then
// one HTTP/1.1 request, or for TCP reading until the server closes.
func tlsMeet(s *tlsSidecar, client *tls.Config) tlsExchange {
	GinkgoHelper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	defer ln.Close()
	// A deadline so a bug cannot hang the suite; no assertion depends on it.
	deadline := time.Now().Add(15 * time.Second)

	type served struct {
		err error
		saw string
	}
	done := make(chan served, 1)
	go func() {
		defer GinkgoRecover()
		conn, err := ln.Accept()
		if err != nil {
			done <- served{err: err}
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(deadline)
		tc := tls.Server(conn, s.cfg)
		if err := tc.Handshake(); err != nil {
			done <- served{err: err}
			return
		}
		cs := tc.ConnectionState()
		var saw string
		if len(cs.PeerCertificates) > 0 {
			saw = strings.Join(leafURISANs(cs.PeerCertificates[0]), " ")
		}
		ok := s.authorized(cs)
		if s.isHTTP {
			if _, err := http.ReadRequest(bufio.NewReader(tc)); err == nil {
				status, body := http.StatusOK, "hello from the app"
				if !ok {
					status, body = http.StatusForbidden, "RBAC: access denied"
				}
				resp := &http.Response{StatusCode: status, ProtoMajor: 1, ProtoMinor: 1, Close: true,
					ContentLength: int64(len(body)), Body: io.NopCloser(strings.NewReader(body)), Header: http.Header{}}
				_ = resp.Write(tc)
			}
		} else if ok {
			_, _ = io.WriteString(tc, "ok\n")
		}
		_ = tc.Close()
		done <- served{saw: saw}
	}()

	var x tlsExchange
	conn, err := net.Dial("tcp", ln.Addr().String())
	Expect(err).NotTo(HaveOccurred())
	_ = conn.SetDeadline(deadline)
	tc := tls.Client(conn, client)
	x.clientErr = tc.Handshake()
	if x.clientErr == nil {
		cs := tc.ConnectionState()
		x.alpn, x.version = cs.NegotiatedProtocol, cs.Version
		if len(cs.PeerCertificates) > 0 {
			x.clientSaw = strings.Join(leafURISANs(cs.PeerCertificates[0]), " ")
		}
		// In TLS 1.3 the client finishes its handshake before the server has
		// judged the client's certificate: a refusal shows up here.
		if s.isHTTP {
			x.clientErr = tlsRequest(tc, &x)
		} else {
			var b []byte
			b, x.clientErr = io.ReadAll(tc)
			x.body = string(b)
		}
	}
	_ = tc.Close()

	var srv served
	Eventually(done).Should(Receive(&srv))
	x.serverErr, x.serverSaw = srv.err, srv.saw
	return x
}

func tlsRequest(tc *tls.Conn, x *tlsExchange) error {
	if _, err := io.WriteString(tc, "GET / HTTP/1.1\r\nHost: callee\r\n\r\n"); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	x.status, x.body = resp.StatusCode, string(b)
	return err
}
