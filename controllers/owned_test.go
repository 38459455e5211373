package controllers

import (
	"context"
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
)

func TestCheckOwned(t *testing.T) {
	owner := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "owner", UID: "owner-uid"}}
	cm := func(name string) *corev1.ConfigMap {
		return &corev1.ConfigMap{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"}, ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}}
	}
	ours := cm("ours")
	if err := controllerutil.SetControllerReference(owner, ours, fake.NewClientBuilder().Build().Scheme()); err != nil {
		t.Fatal(err)
	}
	c := fake.NewClientBuilder().WithObjects(ours, cm("theirs"), cm("also-theirs")).Build()
	objs := func(names ...string) []ownedObject {
		var out []ownedObject
		for _, n := range names {
			out = append(out, owned(cm(n), &corev1.ConfigMap{}))
		}
		return out
	}

	for _, tc := range []struct {
		name      string
		objs      []ownedObject
		conflicts []string
	}{
		{"absent or ours", objs("absent", "ours"), nil},
		{"every foreign object is named, wherever it is in the list", objs("theirs", "ours", "absent", "also-theirs"),
			[]string{`ConfigMap "theirs"`, `ConfigMap "also-theirs"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := checkOwned(context.Background(), c, nil, owner, tc.objs)
			if len(tc.conflicts) == 0 {
				if err != nil {
					t.Fatalf("checkOwned() = %v, want nil", err)
				}
				return
			}
			var notOwned *errNotOwned
			if !errors.As(err, &notOwned) {
				t.Fatalf("checkOwned() = %v, want an *errNotOwned in it", err)
			}
			var conflicts errConflicts
			if !errors.As(err, &conflicts) || len(conflicts) != len(tc.conflicts) {
				t.Fatalf("checkOwned() = %v, want %d conflicts", err, len(tc.conflicts))
			}
			for _, want := range tc.conflicts {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("checkOwned() = %q, want it to name %s", err, want)
				}
			}
		})
	}
}
