package controllers

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
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
// the lookup. The apply sends only what the builders set: status and unset
// (null) fields are dropped, so we never claim fields we do not write.
func applyOwned(ctx context.Context, c client.Client, owner metav1.Object, desired, existing client.Object) error {
	err := c.Get(ctx, client.ObjectKeyFromObject(desired), existing)
	switch {
	case err == nil:
		if !metav1.IsControlledBy(existing, owner) {
			return &errNotOwned{kind: desired.GetObjectKind().GroupVersionKind().Kind, name: desired.GetName()}
		}
	case client.IgnoreNotFound(err) != nil:
		return err
	}

	raw, err := runtime.DefaultUnstructuredConverter.ToUnstructured(desired)
	if err != nil {
		return err
	}
	delete(raw, "status")
	pruneNulls(raw)
	u := &unstructured.Unstructured{Object: raw}
	return c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(FieldOwner), client.ForceOwnership)
}

// pruneNulls removes null values (such as metadata.creationTimestamp) that the
// typed-to-unstructured conversion leaves behind.
func pruneNulls(m map[string]any) {
	for k, v := range m {
		switch t := v.(type) {
		case nil:
			delete(m, k)
		case map[string]any:
			pruneNulls(t)
		case []any:
			for _, e := range t {
				if em, ok := e.(map[string]any); ok {
					pruneNulls(em)
				}
			}
		}
	}
}
