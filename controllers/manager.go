package controllers

import (
	"time"

	appsv1 "k8s.io/api/apps/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/healthz"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
	"github.com/envoymesh/envoymesh-operator/internal/identity"
	"github.com/envoymesh/envoymesh-operator/internal/objects"
	"github.com/envoymesh/envoymesh-operator/internal/prober"
)

// EventSource names the operator in the events it records.
const EventSource = "envoymesh-operator"

// ManagerOptions are what may differ between the manager main.go runs and the
// ones the tests and benchmarks run. Everything else (the cache, the indexes,
// the controllers and the runnables) is wired by NewManager, once, for all.
type ManagerOptions struct {
	// Manager is controller-runtime's own settings: metrics, health probes, leader
	// election, pprof. NewManager sets its Cache; a nil Scheme gets Scheme().
	Manager ctrl.Options
	// Namespaces restricts what the manager watches; empty watches every namespace.
	Namespaces []string
	// EnvoyImage is the sidecar image when neither the mesh nor the MeshService set one.
	EnvoyImage string
	// ClusterDomain is the cluster's DNS domain, used in upstream addresses.
	ClusterDomain string
	// MaxConcurrentReconciles bounds parallel MeshService reconciles (0: controller-runtime's default).
	MaxConcurrentReconciles int
	// Probe tunes the sidecar and the gateway probers (their OwnerLabel is set here).
	Probe prober.Options
	// Identity configures the Pod Certificate signer.
	Identity IdentityOptions
	// XDS configures the ADS server of XDS meshes; without a BindAddress none runs.
	XDS XDSOptions
	// ConflictRetry is how often a MeshService or ServiceMesh that a foreign
	// object blocks looks again (0: DefaultConflictRetry). The cache holds only
	// our own objects, so no event says when a foreign one is deleted.
	ConflictRetry time.Duration
	// WrapClient, when set, wraps the client the controllers read and write with:
	// tests count writes through it.
	WrapClient func(client.Client) client.Client
}

// Scheme holds the built-in kinds and ours.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(meshv1alpha1.AddToScheme(s))
	return s
}

// NewManager builds the operator: the cache as the controllers need it, both
// probers, both controllers and their indexes. A new runnable (a signer, an xDS
// server) is added here, so every test runs it as main.go does.
func NewManager(cfg *rest.Config, o ManagerOptions) (ctrl.Manager, error) {
	mo := o.Manager
	if mo.Scheme == nil {
		mo.Scheme = Scheme()
	}
	mo.Cache = cacheOptions(o.Namespaces, o.Identity.CASecret)
	mgr, err := ctrl.NewManager(cfg, mo)
	if err != nil {
		return nil, err
	}
	c := mgr.GetClient()
	if o.WrapClient != nil {
		c = o.WrapClient(c)
	}

	sidecarProbe, gatewayProbe := o.Probe, o.Probe
	sidecarProbe.OwnerLabel, gatewayProbe.OwnerLabel = objects.ServiceLabel, objects.GatewayLabel
	sidecars := prober.New(mgr.GetClient(), nil, sidecarProbe)
	gateways := prober.New(mgr.GetClient(), nil, gatewayProbe)
	for _, p := range []*prober.Prober{sidecars, gateways} {
		if err := mgr.Add(p); err != nil {
			return nil, err
		}
	}

	defaultSidecar := objects.DefaultSidecar(o.EnvoyImage)
	meshServices := &MeshServiceReconciler{
		Client:                  c,
		Recorder:                mgr.GetEventRecorder(EventSource),
		ClusterDomain:           o.ClusterDomain,
		TrustDomain:             o.Identity.TrustDomain,
		DefaultSidecar:          defaultSidecar,
		MaxConcurrentReconciles: o.MaxConcurrentReconciles,
		Namespaces:              o.Namespaces,
		ConflictRetry:           o.ConflictRetry,
		Sidecars:                sidecars,
		SidecarEvents:           sidecars.Events(),
	}
	meshes := &ServiceMeshReconciler{
		Client:         c,
		Recorder:       mgr.GetEventRecorder(EventSource),
		ClusterDomain:  o.ClusterDomain,
		TrustDomain:    o.Identity.TrustDomain,
		DefaultSidecar: defaultSidecar,
		Namespaces:     o.Namespaces,
		Gateways:       gateways,
		GatewayEvents:  gateways.Events(),
		ConflictRetry:  o.ConflictRetry,
	}
	if o.XDS.enabled() {
		if meshServices.XDS, err = setupXDS(mgr, o, meshServices, meshes); err != nil {
			return nil, err
		}
		meshes.XDS = meshServices.XDS
	}
	if err := meshServices.SetupWithManager(mgr); err != nil {
		return nil, err
	}
	if err := meshes.SetupWithManager(mgr); err != nil {
		return nil, err
	}
	if o.Identity.CASecret.Name != "" {
		if err := setupIdentity(mgr, o.Identity, mgr.GetAPIReader()); err != nil {
			return nil, err
		}
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return nil, err
	}
	return mgr, nil
}

// cacheOptions are the cache settings every manager runs with: the namespaces
// it watches, only the pods the operator runs (the probers need no others, and
// caching every pod would cost memory), and no managedFields, which nothing
// reads. ConfigMaps are watched as metadata only (see SetupWithManager), so their
// data never reaches the cache. Both cut peak RSS at scale (docs/benchmarks.md).
// Of the kinds the operator writes (labelScoped) it holds only what carries
// objects.ManagedByLabel, so memory follows what the operator manages, not the
// size of the cluster: a foreign object of one of our names is found by a live
// read instead (see lookup in apply.go). Of the identity objects it holds only
// the signer's: its requests and trust bundles, and the one CA Secret (no other
// Secret is ever read).
func cacheOptions(namespaces []string, caSecret types.NamespacedName) cache.Options {
	ourSigner := fields.OneTermEqualSelector("spec.signerName", identity.SignerName)
	o := cache.Options{
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Pod{}:                           {Label: managedByUs()},
			&certificatesv1.PodCertificateRequest{}: {Field: ourSigner},
			&certificatesv1.ClusterTrustBundle{}:    {Field: ourSigner},
			// The EndpointSlice controller copies a Service's labels onto its
			// slices, so ours carry the label too: XDS meshes' EDS reads them.
			&discoveryv1.EndpointSlice{}: {Label: managedByUs()},
		},
		DefaultTransform: stripForCache,
	}
	for _, obj := range labelScoped() {
		o.ByObject[obj] = cache.ByObject{Label: managedByUs()}
	}
	if caSecret.Name != "" {
		o.ByObject[&corev1.Secret{}] = cache.ByObject{
			Namespaces: map[string]cache.Config{caSecret.Namespace: {}},
			Field:      fields.OneTermEqualSelector("metadata.name", caSecret.Name),
		}
	}
	for _, ns := range namespaces {
		if o.DefaultNamespaces == nil {
			o.DefaultNamespaces = map[string]cache.Config{}
		}
		o.DefaultNamespaces[ns] = cache.Config{}
	}
	return o
}

// labelScoped are the kinds the operator writes, which the cache holds only
// with objects.ManagedByLabel: every object built by internal/objects carries
// it. Whatever else reads one of these kinds must read our own objects, or read
// live (the signer's ServiceAccount lookup falls back to the API server).
func labelScoped() []client.Object {
	return []client.Object{
		&appsv1.Deployment{},
		&corev1.Service{},
		&corev1.ServiceAccount{},
		&corev1.ConfigMap{},
		&networkingv1.NetworkPolicy{},
		&policyv1.PodDisruptionBudget{},
	}
}

// labelScopedKinds are labelScoped's kinds, by group and kind.
var labelScopedKinds = func() map[schema.GroupKind]bool {
	kinds := map[schema.GroupKind]bool{}
	for _, obj := range labelScoped() {
		gvk, err := apiutil.GVKForObject(obj, clientgoscheme.Scheme)
		utilruntime.Must(err)
		kinds[gvk.GroupKind()] = true
	}
	return kinds
}()

// cachedByLabel reports whether the cache holds obj's kind only with
// objects.ManagedByLabel, so that a miss does not mean the object is absent.
// obj may be typed, or metadata only with its kind set.
func cachedByLabel(obj client.Object) bool {
	gvk, err := apiutil.GVKForObject(obj, clientgoscheme.Scheme)
	return err == nil && labelScopedKinds[gvk.GroupKind()]
}

// managedByUs selects what the operator writes: the objects of labelScoped, and
// the pods it runs (MeshService and gateway pods).
func managedByUs() labels.Selector {
	return labels.SelectorFromSet(labels.Set{objects.ManagedByLabel: objects.ManagedBy})
}

func stripForCache(obj any) (any, error) {
	if o, ok := obj.(client.Object); ok {
		o.SetManagedFields(nil)
	}
	return obj, nil
}
