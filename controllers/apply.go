package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
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

// ownedObject is one object an owner controls: how to look up what exists under
// its name, and how to build what should be there.
type ownedObject struct {
	kind string
	// existing is an empty object of the kind, named as the desired one.
	existing client.Object
	// desired builds the object to apply. It runs only when an apply may be
	// needed, so an expensive body (a rendered Envoy config) is not built for a
	// reconcile that would send nothing.
	desired func() (client.Object, error)
	// version, when set, stands for everything desired depends on: while it and
	// the object are as the last apply left them, desired is not even built.
	// Without it, the body is built and its hash compared.
	version string
}

// owned is an object built before the reconcile applies it.
func owned(desired, existing client.Object) ownedObject {
	existing.SetNamespace(desired.GetNamespace())
	existing.SetName(desired.GetName())
	return ownedObject{
		kind:     desired.GetObjectKind().GroupVersionKind().Kind,
		existing: existing,
		desired:  func() (client.Object, error) { return desired, nil },
	}
}

// ownedVersioned is an object whose content version is known before it is
// built: build runs only when that version, or the object, changed.
func ownedVersioned(kind string, existing client.Object, version string, build func() (client.Object, error)) ownedObject {
	return ownedObject{kind: kind, existing: existing, desired: build, version: version}
}

func (o ownedObject) key() client.ObjectKey { return client.ObjectKeyFromObject(o.existing) }

// errConflicts lists every object of a desired name that the owner does not
// control. errors.As finds each *errNotOwned in it.
type errConflicts []*errNotOwned

func (e errConflicts) Error() string {
	msgs := make([]string, len(e))
	for i, c := range e {
		msgs[i] = c.Error()
	}
	return strings.Join(msgs, "; ")
}

func (e errConflicts) Unwrap() []error {
	errs := make([]error, len(e))
	for i, c := range e {
		errs[i] = c
	}
	return errs
}

// checkOwned looks up every object before any is applied and returns
// errConflicts naming those that exist and owner does not control. The objects
// of one owner reference each other (a Deployment mounts its ConfigMap), so one
// foreign object must hold back all of them.
func checkOwned(ctx context.Context, c client.Reader, owner client.Object, objs []ownedObject) error {
	var conflicts errConflicts
	for _, o := range objs {
		err := c.Get(ctx, o.key(), o.existing)
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return err
		case !metav1.IsControlledBy(o.existing, owner):
			conflicts = append(conflicts, &errNotOwned{kind: o.kind, name: o.key().Name})
		}
	}
	if len(conflicts) > 0 {
		return conflicts
	}
	return nil
}

// applyAllOwned applies every object, or none of them when checkOwned finds a
// conflict: the error then holds an *errNotOwned for each.
func applyAllOwned(ctx context.Context, c client.Client, applied *appliedVersions, owner client.Object, objs []ownedObject) error {
	if err := checkOwned(ctx, c, owner, objs); err != nil {
		return err
	}
	for _, o := range objs {
		err := applyOwned(ctx, c, applied, owner, o)
		var notOwned *errNotOwned
		switch {
		case errors.As(err, &notOwned):
			// Created between the check and the apply; the next reconcile holds all back.
			return err
		case err != nil:
			return fmt.Errorf("applying %s %s: %w", o.kind, o.key().Name, err)
		}
	}
	return nil
}

// applyOwned server-side-applies o unless an object of its name exists that
// owner does not control. The apply sends only what the builders set
// (objects.ApplyBody), and is skipped when applied shows it would change nothing:
// by o's version, before o is built, or else by a hash of the body.
func applyOwned(ctx context.Context, c client.Client, applied *appliedVersions, owner client.Object, o ownedObject) error {
	existing := o.existing
	err := c.Get(ctx, o.key(), existing)
	switch {
	case err == nil:
		if !metav1.IsControlledBy(existing, owner) {
			return &errNotOwned{kind: o.kind, name: o.key().Name}
		}
	case client.IgnoreNotFound(err) != nil:
		return err
	default:
		existing = nil
	}
	ownerKey, objKey := client.ObjectKeyFromObject(owner), appliedKey{kind: o.kind, name: o.key().Name}
	var hash [sha256.Size]byte
	if o.version != "" {
		hash = sha256.Sum256([]byte("version\x00" + o.version))
		if existing != nil && applied.unchanged(ownerKey, objKey, hash, existing.GetResourceVersion()) {
			return nil
		}
	}

	desired, err := o.desired()
	if err != nil {
		return err
	}
	body, err := objects.ApplyBody(desired)
	if err != nil {
		return err
	}
	sent, err := json.Marshal(body.Object)
	if err != nil {
		return err
	}
	if o.version == "" {
		hash = sha256.Sum256(sent)
		if existing != nil && applied.unchanged(ownerKey, objKey, hash, existing.GetResourceVersion()) {
			return nil
		}
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

// deleteControlled deletes obj (its namespace and name set) when owner controls
// it; a missing or foreign object is left as it is. The UID precondition spares
// an object of that name created meanwhile.
func deleteControlled(ctx context.Context, c client.Client, owner, obj client.Object) error {
	err := c.Get(ctx, client.ObjectKeyFromObject(obj), obj)
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return err
	case !metav1.IsControlledBy(obj, owner):
		return nil
	}
	return client.IgnoreNotFound(c.Delete(ctx, obj, client.Preconditions{UID: ptr.To(obj.GetUID())}))
}
