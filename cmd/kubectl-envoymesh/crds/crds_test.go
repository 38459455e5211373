package crds

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestCopiesAreCurrent fails when the embedded copies drift from
// config/crd/bases: run `make build` (or copy them) and commit.
func TestCopiesAreCurrent(t *testing.T) {
	want, err := filepath.Glob(filepath.Join("..", "..", "..", "config", "crd", "bases", "*.yaml"))
	if err != nil || len(want) == 0 {
		t.Fatalf("no CRDs in config/crd/bases: %v", err)
	}
	got, err := Files()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Errorf("embedded %d CRDs, config/crd/bases has %d", len(got), len(want))
	}
	for _, path := range want {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, got[filepath.Base(path)]) {
			t.Errorf("cmd/kubectl-envoymesh/crds/%s differs from %s: run `make build` and commit the copy", filepath.Base(path), path)
		}
	}
	crds, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(crds) != len(want) {
		t.Errorf("parsed %d CRDs", len(crds))
	}
}
