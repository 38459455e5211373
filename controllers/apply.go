package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/envoymesh/envoymesh-operator/internal/objects"
)

// FieldOwner is the server-side apply field manager of everything the operator writes.
const FieldOwner = "envoymesh-operator"

// errNotOwned means an object of the desired name exists and is not controlled by
// the resource we reconcile; we leave it as it was.
type errNotOwned struct {
	kind, name string
}

func (e *errNotOwned) Error() string {
	return fmt.Sprintf("%s %q already exists and is not managed by this resource; delete or rename it", e.kind, e.name)
}

// applyOwned server-side-applies desired unless an object of that name exists that
// owner does not control. existing is an empty object of the desired type used for
// the lookup. The apply sends only what the builders set (objects.ApplyBody), and
// is skipped when applied shows it would change nothing.
func applyOwned(ctx context.Context, c client.Client, applied *appliedVersions, owner client.Object, desired, existing client.Object) error {
	err := c.Get(ctx, client.ObjectKeyFromObject(desired), existing)
	switch {
	case err == nil:
		if !metav1.IsControlledBy(existing, owner) {
			return &errNotOwned{kind: desired.GetObjectKind().GroupVersionKind().Kind, name: desired.GetName()}
		}
	case client.IgnoreNotFound(err) != nil:
		return err
	default:
		existing = nil
	}

	body, err := objects.ApplyBody(desired)
	if err != nil {
		return err
	}
	sent, err := json.Marshal(body.Object)
	if err != nil {
		return err
	}
	ownerKey, objKey := client.ObjectKeyFromObject(owner), appliedKey{kind: body.GetKind(), name: body.GetName()}
	hash := sha256.Sum256(sent)
	if existing != nil && applied.unchanged(ownerKey, objKey, hash, existing.GetResourceVersion()) {
		return nil
	}
	// The hashed bytes are the body sent, and the answer is decoded into a typed
	// object (protobuf for built-in kinds): cheaper than c.Apply, which encodes the
	// body again and decodes the answer into a map.
	answer, ok := desired.DeepCopyObject().(client.Object)
	if !ok {
		return fmt.Errorf("%T is not a client.Object", desired)
	}
	if err := c.Patch(ctx, answer, client.RawPatch(types.ApplyPatchType, sent), client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
		return err
	}
	applied.record(ownerKey, objKey, hash, answer.GetResourceVersion())
	return nil
}

// configMapMeta is an empty ConfigMap as the manager's cache holds them: metadata
// only (see the controllers' SetupWithManager). Reading a typed ConfigMap through
// the cache would start a second informer, holding every ConfigMap's data.
func configMapMeta() *metav1.PartialObjectMetadata {
	return &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"}}
}

// appliedVersions remembers, for every object an owner applied, a hash of the body
// sent and the resourceVersion the API server answered with. While the cache still
// shows that resourceVersion, the object is exactly what the apply left, so the same
// body again would change nothing. Any other writer (drift), a deletion, or a new
// body means applying again, and a restart forgets everything. It spares the API
// server the no-op applies of reconciles that change nothing we own: a Deployment's
// status moving, a sidecar report, an upstream that only changes the ConfigMap.
// The zero value is ready; it is safe for concurrent use.
type appliedVersions struct {
	mu      sync.Mutex
	byOwner map[types.NamespacedName]map[appliedKey]appliedVersion
}

type appliedKey struct{ kind, name string }

type appliedVersion struct {
	body            [sha256.Size]byte
	resourceVersion string
}

func (a *appliedVersions) unchanged(owner types.NamespacedName, obj appliedKey, body [sha256.Size]byte, resourceVersion string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	v, ok := a.byOwner[owner][obj]
	return ok && v.body == body && v.resourceVersion == resourceVersion
}

func (a *appliedVersions) record(owner types.NamespacedName, obj appliedKey, body [sha256.Size]byte, resourceVersion string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.byOwner == nil {
		a.byOwner = map[types.NamespacedName]map[appliedKey]appliedVersion{}
	}
	if a.byOwner[owner] == nil {
		a.byOwner[owner] = map[appliedKey]appliedVersion{}
	}
	a.byOwner[owner][obj] = appliedVersion{body: body, resourceVersion: resourceVersion}
}

// forget drops what owner applied, once owner is gone.
func (a *appliedVersions) forget(owner types.NamespacedName) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.byOwner, owner)
}
