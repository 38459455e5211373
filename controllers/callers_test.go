package controllers

import (
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
)

func TestCallersSortedWithoutTheDeleted(t *testing.T) {
	ms := func(ns, name string, deleting bool) meshv1alpha1.MeshService {
		m := meshv1alpha1.MeshService{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
		if deleting {
			now := metav1.Now()
			m.DeletionTimestamp = &now
		}
		return m
	}
	got := callers([]meshv1alpha1.MeshService{ms("shop", "web", false), ms("infra", "cron", false), ms("shop", "gone", true), ms("shop", "api", false)})
	want := []types.NamespacedName{{Namespace: "infra", Name: "cron"}, {Namespace: "shop", Name: "api"}, {Namespace: "shop", Name: "web"}}
	if !slices.Equal(got, want) {
		t.Errorf("callers() = %v, want %v", got, want)
	}
}
