// Command sidecardouble is a TEST DOUBLE of the Envoy sidecars, for the local
// kwok cluster of `make demo` and the e2e suite, where no Envoy (and no kubelet)
// can run. For every running meshed pod (label mesh.envoymesh.io/service, or
// mesh.envoymesh.io/gateway) whose IP is a loopback address it binds
// <podIP>:15021 and answers the status listener's paths (/ready, /server_info,
// /stats, /clusters, /certs) as an Envoy that loaded the pod's ConfigMap would: the
// LDS/CDS versions are the version_info of lds.yaml/cds.yaml, the clusters are
// those of cds.yaml. A ConfigMap change is "loaded" after --propagation-delay,
// as kubelet's ConfigMap volume refresh would make it visible to Envoy.
//
// /certs reports the pod's Pod Certificate when --kubelet-dir names the directory
// the kubelet double writes pod volumes to: the expiry (NotAfter) and URI SANs of
// the first CERTIFICATE block of
// <kubelet-dir>/<podUID>/volumes/kubernetes.io~projected/envoy-identity/bundle.pem,
// reread when the file changes. Without --kubelet-dir, or while that file is
// missing, /certs answers 404: no certificate.
//
// In an XDS mesh (the pod's bootstrap has dynamic_resources.ads_config) the pod's
// Envoy is an ADS client instead (internal/xds/fleetsim, one stream: CDS, EDS by
// name, LDS, nonces, ACK/NACK), as the Envoy started with that bootstrap would be:
// it dials the address of the bootstrap's envoymesh-xds cluster (a loopback IP;
// a DNS name is refused, never resolved) over mTLS with the pod's Pod Certificate
// (bundle.pem, key then chain, and ca.pem from the identity volume under
// --kubelet-dir, reread at every handshake; until the kubelet double wrote them it
// waits and retries), verifies the server's SPIFFE ID from the cluster's
// UpstreamTlsContext, and names itself node.id "<pod>.<namespace>"
// (--service-node) and node.cluster from the bootstrap. A broken stream is
// reconnected with backoff (500ms doubling to 4s), presenting the versions it
// runs. The bootstrap is read once, when the pod's ConfigMap is first seen, as
// Envoy reads it at start. Its status port then reports the stream:
// listener_manager.lds / cluster_manager.cds version_text are the versions ACKed,
// update_rejected counts the NACKs, control_plane.connected_state is 1 while the
// stream is open, /clusters lists the accepted clusters with their EDS hosts
// (health HEALTHY, DRAINING, ... as sent), and the server state is INITIALIZING
// until the first listeners arrived (or Envoy's 15s initial fetch timeout). There
// is no propagation delay: xDS pushes.
//
// Faults and denials are set per MeshService (or gateway) on the control endpoint
// (--control-address, 127.0.0.1 only):
//
//	PUT    /faults/<namespace>/<service>?mode=reject|hang|die
//	DELETE /faults/<namespace>/<service>
//	PUT    /denials/<namespace>/<service>?count=N[&mode=enforce|audit]
//	PUT    /nack/<namespace>/<service>?message=TEXT[&pod=NAME]
//	DELETE /nack/<namespace>/<service>[?pod=NAME]
//	GET    /sidecars            every served pod, its address, version, fault, denials, certificate
//	                            expiry, delivery and (XDS) its stream
//
// <service> is the value of the pod's mesh.envoymesh.io/service label, or
// "gateway:<mesh>" for a gateway. reject: every version the ConfigMap moves to
// is refused (update_rejected rises, the old version stays loaded) until the
// fault is cleared, when the current version loads. hang: every admin request
// blocks. die: the status port is closed. See docs/local-cluster.md. In XDS meshes
// reject NACKs every listener or cluster update that changes what the Envoy runs,
// with a fixed message; clearing it does not bring a refused version back (the
// server holds a NACKed version until its snapshot changes, or sends it again
// when the stream reconnects, and then it is accepted). die also ends the stream:
// the Envoy that comes back starts a new one with nothing loaded.
//
// /nack (XDS sidecars only; 404 when the service, or pod, has none) arms a NACK:
// the next listener or cluster update that changes what the Envoy runs is
// refused with error_detail TEXT, once per armed sidecar; the other type of the
// same version is still accepted if it is valid, as Envoy rejects per type. A
// refused config stays refused (sent again, it is NACKed again) until DELETE
// /nack, which also disarms. An update that leaves a type unchanged is accepted.
//
// With --endpointslices it also stands in for the EndpointSlice controller, which
// kube-apiserver does not let write loopback pod IPs: it writes the EndpointSlice
// of every meshed headless Service with each pod's 127.a.b.c as 198.18.b.c, which
// nothing dials (see endpointslices.go), so XDS meshes get EDS endpoints.
//
// /denials adds N (a positive integer) to the denial counter of every current
// sidecar of the service: mode=enforce (the default) to http.inbound.rbac.denied,
// as if its RBAC filter had answered N requests 403; mode=audit to
// http.inbound.rbac.shadow_denied, what Audit mode reports. The counters only
// rise, and a new pod starts from 0 as a restarted Envoy does. It answers 404 when
// the service has no sidecar.
package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"log"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/envoymesh/envoymesh-operator/internal/envoyadmin/admintest"
	"github.com/envoymesh/envoymesh-operator/internal/envoyconfig"
	"github.com/envoymesh/envoymesh-operator/internal/objects"
)

// Fault modes accepted by the control endpoint.
const (
	faultReject = "reject"
	faultHang   = "hang"
	faultDie    = "die"
)

// Denial modes accepted by the control endpoint, and the counters they raise.
const (
	denyEnforce = "enforce"
	denyAudit   = "audit"

	deniedCounter      = "http.inbound.rbac.denied"
	auditDeniedCounter = "http.inbound.rbac.shadow_denied"
)

func main() {
	var (
		kubeconfig, controlAddr, kubeletDir string
		delay, resync                       time.Duration
		endpointSlices                      bool
	)
	flag.StringVar(&kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "Kubeconfig of the cluster whose pods to serve.")
	flag.StringVar(&controlAddr, "control-address", "127.0.0.1:15020", "Loopback address of the fault-control endpoint.")
	flag.DurationVar(&delay, "propagation-delay", 2*time.Second, "How long a ConfigMap change takes to reach the double's Envoys.")
	flag.DurationVar(&resync, "resync", 500*time.Millisecond, "How often pods and ConfigMaps are compared with what is served.")
	flag.StringVar(&kubeletDir, "kubelet-dir", "", "Where the kubelet double writes pod volumes (its --dir); /certs reports each pod's "+
		"Pod Certificate from there. Empty: no certificates.")
	flag.BoolVar(&endpointSlices, "endpointslices", false, "Write each meshed headless Service's EndpointSlice with its pods' "+
		"loopback IPs 127.a.b.c as 198.18.b.c, which kube-apiserver refuses to take from the real EndpointSlice controller (see endpointslices.go).")
	flag.Parse()
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)

	if err := run(kubeconfig, controlAddr, kubeletDir, delay, resync, endpointSlices); err != nil {
		log.Fatal(err)
	}
}

func run(kubeconfig, controlAddr, kubeletDir string, delay, resync time.Duration, endpointSlices bool) error {
	if !isLoopback(controlAddr) {
		return fmt.Errorf("control address %q is not a loopback address", controlAddr)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	factory := informers.NewSharedInformerFactory(cs, 0)
	pods := factory.Core().V1().Pods().Lister()
	cms := factory.Core().V1().ConfigMaps().Lister()
	var slices *sliceWriter
	var services func() ([]*corev1.Service, error)
	if endpointSlices {
		svcLister := factory.Core().V1().Services().Lister()
		sliceLister := factory.Discovery().V1().EndpointSlices().Lister()
		services = func() ([]*corev1.Service, error) { return svcLister.List(labels.Everything()) }
		slices = &sliceWriter{cs: cs, get: func(ns, name string) *discoveryv1.EndpointSlice {
			es, err := sliceLister.EndpointSlices(ns).Get(name)
			if err != nil {
				return nil
			}
			return es
		}}
	}
	factory.Start(ctx.Done())
	for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("cache of %v did not sync", typ)
		}
	}

	d := &double{delay: delay, kubeletDir: kubeletDir, sidecars: map[string]*sidecar{}, faults: map[string]string{}}
	ln, err := net.Listen("tcp", controlAddr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: d.controlHandler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	log.Printf("sidecar double: control endpoint on http://%s, propagation delay %s, kubelet dir %q, EndpointSlices %v", ln.Addr(), delay, kubeletDir, endpointSlices)

	tick := time.NewTicker(resync)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			_ = srv.Close()
			d.closeAll()
			return nil
		case <-tick.C:
			all, err := pods.List(labels.Everything())
			if err != nil {
				log.Printf("listing pods: %v", err)
				continue
			}
			d.sync(all, func(ns, name string) (*corev1.ConfigMap, error) { return cms.ConfigMaps(ns).Get(name) })
			if slices != nil {
				if svcs, err := services(); err != nil {
					log.Printf("listing services: %v", err)
				} else {
					slices.sync(ctx, svcs, all)
				}
			}
		}
	}
}

// sidecar is one pod's stub Envoy.
type sidecar struct {
	key, owner, addr, configMap string
	uid                         string
	identity                    bool               // the pod has the identity volume
	stub                        *admintest.Sidecar // nil while "dead"
	loaded                      string             // the version Envoy runs
	pending                     string             // the version the ConfigMap holds, not yet loaded
	pendingSince                time.Time
	refused                     string // the last version counted as rejected
	rejected                    uint64
	hanging                     bool
	denied, auditDenied         uint64
	cert                        certificate

	// The status port: the stub, served by srv on bound (the address it got).
	srv   *http.Server
	bound string
	hang  atomic.Bool // the stub hangs: the status handler then leaves every path to it

	// The bootstrap, read when the ConfigMap is first seen (as Envoy reads it at
	// start): ads is its ADS server, nil for file delivery.
	bootRead bool
	ads      *adsBootstrap
	// xds is the Envoy's ADS client in an XDS mesh; view is the same for the
	// status handler, which runs outside the double's lock.
	xds  *xdsClient
	view atomic.Pointer[xdsClient]
}

// certificate is the Pod Certificate a sidecar reports, read from the kubelet double's volume.
type certificate struct {
	expiry  time.Time // zero: none
	uriSANs []string
	// modTime and size of the bundle it was read from, so an unchanged file is not parsed again.
	modTime time.Time
	size    int64
}

type double struct {
	delay time.Duration
	// kubeletDir is the kubelet double's --dir; empty means no certificates.
	kubeletDir string
	// now is the clock the propagation delay is measured on; nil means time.Now. Tests set it
	// to step through the delay without sleeping.
	now      func() time.Time
	mu       sync.Mutex
	sidecars map[string]*sidecar // by pod namespace/name/uid
	faults   map[string]string   // by owner key namespace/service
}

// ownerKey names what a pod belongs to: "<ns>/<service>" or "<ns>/gateway:<mesh>".
func ownerKey(p *corev1.Pod) string {
	if s, ok := p.Labels[objects.ServiceLabel]; ok {
		return p.Namespace + "/" + s
	}
	if g, ok := p.Labels[objects.GatewayLabel]; ok {
		return p.Namespace + "/gateway:" + g
	}
	return ""
}

// configMapOf is the ConfigMap mounted as Envoy's config directory.
func configMapOf(p *corev1.Pod) string {
	for _, v := range p.Spec.Volumes {
		if v.Name == objects.ConfigVolumeName && v.ConfigMap != nil {
			return v.ConfigMap.Name
		}
	}
	return ""
}

// hasIdentity reports whether the pod mounts the identity volume, as it does unless the mesh's
// mTLS is Disabled.
func hasIdentity(p *corev1.Pod) bool {
	return slices.ContainsFunc(p.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == objects.IdentityVolumeName })
}

func (d *double) sync(pods []*corev1.Pod, getCM func(ns, name string) (*corev1.ConfigMap, error)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	running := map[string]int{} // running pods per "<ns>/<service>", the hosts of its cluster
	seen := map[string]bool{}
	for _, p := range pods {
		owner := ownerKey(p)
		if owner == "" || p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning || !isLoopback(net.JoinHostPort(p.Status.PodIP, "0")) {
			continue
		}
		running[owner]++
		key := p.Namespace + "/" + p.Name + "/" + string(p.UID)
		seen[key] = true
		s := d.sidecars[key]
		if s == nil {
			s = &sidecar{key: key, owner: owner, configMap: configMapOf(p), uid: string(p.UID), identity: hasIdentity(p),
				addr: net.JoinHostPort(p.Status.PodIP, fmt.Sprint(envoyconfig.StatusPort))}
			d.sidecars[key] = s
			log.Printf("pod %s/%s: sidecar at %s (ConfigMap %s)", p.Namespace, p.Name, s.addr, s.configMap)
		}
	}
	for key, s := range d.sidecars {
		if !seen[key] {
			log.Printf("pod %s gone: closing %s", key, s.addr)
			s.closeStatus()
			s.closeXDS()
			delete(d.sidecars, key)
			continue
		}
		d.step(s, getCM, running)
	}
}

// step brings one sidecar up to date with its fault, its ConfigMap and the clock.
func (d *double) step(s *sidecar, getCM func(ns, name string) (*corev1.ConfigMap, error), running map[string]int) {
	fault := d.faults[s.owner]
	if fault == faultDie {
		if s.stub != nil {
			log.Printf("%s: dying (fault)", s.key)
			s.closeStatus()
			// A dead Envoy's stream goes with it; the one that starts again
			// rereads its bootstrap and starts with nothing loaded.
			s.closeXDS()
			s.bootRead, s.ads = false, nil
		}
		return
	}
	if s.stub == nil {
		if err := s.serveStatus(); err != nil {
			log.Printf("%s: %v", s.key, err)
			return
		}
		s.hanging = false
	}
	if want := fault == faultHang; want != s.hanging {
		s.stub.SetHang(want)
		s.hang.Store(want)
		s.hanging = want
	}
	d.readCertificate(s)
	s.stub.SetCertificate(s.cert.expiry, s.cert.uriSANs...)
	s.stub.SetCounter(deniedCounter, s.denied)
	s.stub.SetCounter(auditDeniedCounter, s.auditDenied)

	ns := strings.SplitN(s.key, "/", 2)[0]
	cm, err := getCM(ns, s.configMap)
	if err != nil {
		return // not there yet: Envoy would not have started either
	}
	now := time.Now()
	if d.now != nil {
		now = d.now()
	}
	if !s.bootRead {
		s.bootRead = true
		boot, err := parseADSBootstrap(cm.Data[envoyconfig.BootstrapFile])
		switch {
		case err != nil:
			log.Printf("%s: %v; serving it as a file-delivered Envoy", s.key, err)
		case boot != nil:
			s.ads = boot
		}
	}
	if s.ads != nil {
		d.stepXDS(s, fault, now)
		return
	}
	version, clusters := parseConfig(cm)
	if version == "" && s.loaded != "" {
		version = s.loaded // lds.yaml gone (the mesh went to xDS): Envoy keeps what it runs
	}
	if version != s.pending {
		s.pending, s.pendingSince = version, now
	}
	switch {
	case s.loaded == "":
		// The first config is what the pod started with: no propagation delay.
		s.loaded = version
	case version == s.loaded || now.Sub(s.pendingSince) < d.delay:
	case fault == faultReject:
		if s.refused != version {
			s.refused = version
			s.rejected++
			log.Printf("%s: rejecting version %s, keeping %s", s.key, version, s.loaded)
		}
	default:
		log.Printf("%s: loading version %s (was %s)", s.key, version, s.loaded)
		s.loaded = version
	}
	s.stub.SetVersion(s.loaded)
	s.stub.SetRejected(s.rejected, s.rejected)
	if s.loaded == version {
		s.stub.SetClusters(hosts(clusters, running)...)
	}
}

// bundlePath is where the kubelet double writes a pod's Pod Certificate.
func bundlePath(kubeletDir, podUID string) string {
	return filepath.Join(kubeletDir, podUID, "volumes", "kubernetes.io~projected",
		objects.IdentityVolumeName, envoyconfig.CredentialBundleFile)
}

// readCertificate brings s.cert up to date with the pod's credential bundle, parsing it only
// when it changed. A file that cannot be read is no certificate (not written yet, or the pod has
// none); one that does not parse is none too, and logged once.
func (d *double) readCertificate(s *sidecar) {
	if d.kubeletDir == "" || !s.identity {
		s.cert = certificate{}
		return
	}
	path := bundlePath(d.kubeletDir, s.uid)
	fi, err := os.Stat(path)
	if err != nil {
		s.cert = certificate{}
		return
	}
	if fi.ModTime().Equal(s.cert.modTime) && fi.Size() == s.cert.size {
		return
	}
	cert := certificate{modTime: fi.ModTime(), size: fi.Size()}
	b, err := os.ReadFile(path)
	if err == nil {
		cert.expiry, cert.uriSANs, err = leafCertificate(b)
	}
	if err != nil {
		log.Printf("%s: %s: %v", s.key, path, err)
		cert.expiry, cert.uriSANs = time.Time{}, nil
	} else if !cert.expiry.Equal(s.cert.expiry) {
		log.Printf("%s: certificate %v expires %s", s.key, cert.uriSANs, cert.expiry.Format(time.RFC3339))
	}
	s.cert = cert
}

// leafCertificate returns the expiry and URI SANs of the first CERTIFICATE block of a
// credential bundle: the private key, then the chain, leaf first.
func leafCertificate(bundle []byte) (time.Time, []string, error) {
	for rest := bundle; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return time.Time{}, nil, errors.New("no CERTIFICATE block")
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return time.Time{}, nil, err
		}
		var sans []string
		for _, u := range cert.URIs {
			sans = append(sans, u.String())
		}
		return cert.NotAfter.UTC(), sans, nil
	}
}

// hosts gives each cluster its endpoints: an upstream cluster out.<name>.<ns>
// has one healthy host per running pod of that service, any other cluster one.
func hosts(clusters []string, running map[string]int) []admintest.Cluster {
	out := make([]admintest.Cluster, 0, len(clusters))
	for _, name := range clusters {
		n := 1
		if parts := strings.Split(name, "."); len(parts) == 3 && parts[0] == "out" {
			n = running[parts[2]+"/"+parts[1]]
		}
		out = append(out, admintest.Cluster{Name: name, Hosts: n, Healthy: n})
	}
	return out
}

// parseConfig reads the version Envoy would load from the ConfigMap (LDS's
// version_info; CDS is written with the same one) and the cluster names of cds.yaml.
func parseConfig(cm *corev1.ConfigMap) (string, []string) {
	var lds, cds struct {
		VersionInfo string `json:"version_info"`
		Resources   []struct {
			Name string `json:"name"`
		} `json:"resources"`
	}
	_ = yaml.Unmarshal([]byte(cm.Data[envoyconfig.ListenersFile]), &lds)
	_ = yaml.Unmarshal([]byte(cm.Data[envoyconfig.ClustersFile]), &cds)
	version := lds.VersionInfo
	if version == "" {
		version = cds.VersionInfo
	}
	var names []string
	for _, r := range cds.Resources {
		names = append(names, r.Name)
	}
	return version, names
}

func (d *double) closeAll() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, s := range d.sidecars {
		s.closeStatus()
		s.closeXDS()
	}
}

// SidecarInfo is one served pod as GET /sidecars reports it.
type SidecarInfo struct {
	Pod               string     `json:"pod"`
	Owner             string     `json:"owner"`
	Address           string     `json:"address"`
	Serving           bool       `json:"serving"`
	Version           string     `json:"version"`
	Pending           string     `json:"pending,omitempty"`
	Rejected          uint64     `json:"rejected"`
	Fault             string     `json:"fault,omitempty"`
	ConfigMap         string     `json:"configMap"`
	Denied            uint64     `json:"denied"`
	AuditDenied       uint64     `json:"auditDenied"`
	CertificateExpiry *time.Time `json:"certificateExpiry,omitempty"`
	// Delivery is ConfigMap (files) or XDS, as the pod's bootstrap says; XDS
	// details the ADS stream of an XDS sidecar.
	Delivery string   `json:"delivery"`
	XDS      *XDSInfo `json:"xds,omitempty"`
}

func (d *double) controlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /sidecars", func(w http.ResponseWriter, _ *http.Request) {
		d.mu.Lock()
		out := []SidecarInfo{}
		for _, s := range d.sidecars {
			info := SidecarInfo{Pod: s.key, Owner: s.owner, Address: s.addr, Serving: s.stub != nil,
				Version: s.loaded, Rejected: s.rejected, Fault: d.faults[s.owner], ConfigMap: s.configMap,
				Denied: s.denied, AuditDenied: s.auditDenied}
			if s.pending != s.loaded {
				info.Pending = s.pending
			}
			if expiry := s.cert.expiry; !expiry.IsZero() {
				info.CertificateExpiry = &expiry // a copy: it is encoded after the lock is released
			}
			info.Delivery = "ConfigMap"
			if s.ads != nil {
				info.Delivery = "XDS"
			}
			if s.xds != nil {
				info.XDS = s.xds.info()
			}
			out = append(out, info)
		}
		d.mu.Unlock()
		slices.SortFunc(out, func(a, b SidecarInfo) int { return strings.Compare(a.Pod, b.Pod) })
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	})
	mux.HandleFunc("PUT /faults/{namespace}/{service}", func(w http.ResponseWriter, r *http.Request) {
		mode := r.URL.Query().Get("mode")
		if !slices.Contains([]string{faultReject, faultHang, faultDie}, mode) {
			http.Error(w, "mode must be reject, hang or die", http.StatusBadRequest)
			return
		}
		key := r.PathValue("namespace") + "/" + r.PathValue("service")
		d.mu.Lock()
		d.faults[key] = mode
		d.mu.Unlock()
		log.Printf("fault %s on %s", mode, key)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("DELETE /faults/{namespace}/{service}", func(w http.ResponseWriter, r *http.Request) {
		key := r.PathValue("namespace") + "/" + r.PathValue("service")
		d.mu.Lock()
		delete(d.faults, key)
		d.mu.Unlock()
		log.Printf("fault cleared on %s", key)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("PUT /denials/{namespace}/{service}", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		n, err := strconv.ParseUint(q.Get("count"), 10, 64)
		if err != nil || n == 0 {
			http.Error(w, "count must be a positive integer", http.StatusBadRequest)
			return
		}
		mode := q.Get("mode")
		if mode == "" {
			mode = denyEnforce
		}
		if mode != denyEnforce && mode != denyAudit {
			http.Error(w, "mode must be enforce or audit", http.StatusBadRequest)
			return
		}
		key := r.PathValue("namespace") + "/" + r.PathValue("service")
		if d.addDenials(key, mode, n) == 0 {
			http.Error(w, "no sidecar of "+key, http.StatusNotFound)
			return
		}
		log.Printf("%d %s denials on every sidecar of %s", n, mode, key)
		w.WriteHeader(http.StatusNoContent)
	})
	d.nackHandlers(mux)
	return mux
}

// addDenials adds n to a denial counter of every sidecar of owner and returns how many it
// changed. The stubs report the new counts at the next step.
func (d *double) addDenials(owner, mode string, n uint64) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	changed := 0
	for _, s := range d.sidecars {
		if s.owner != owner {
			continue
		}
		counter := &s.denied
		if mode == denyAudit {
			counter = &s.auditDenied
		}
		if *counter > math.MaxUint64-n {
			*counter = math.MaxUint64
		} else {
			*counter += n
		}
		changed++
	}
	return changed
}

// isLoopback reports whether "host:port" is on 127.0.0.0/8 (or ::1): the double
// never binds or answers anywhere else.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
