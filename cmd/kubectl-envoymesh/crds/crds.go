// Package crds holds the CustomResourceDefinitions this build of the plugin was
// made with: copies of config/crd/bases (go:embed cannot reach outside its
// package directory). `make build` refreshes the copies after `make manifests`,
// and crds_test.go fails whenever they differ from config/crd/bases, so a
// released plugin always embeds the CRDs of its own commit.
package crds

import (
	"embed"
	"fmt"
	"io/fs"
	"sort"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"
)

//go:embed *.yaml
var files embed.FS

// Files is the embedded CRD manifests by file name.
func Files() (map[string][]byte, error) {
	names, err := fs.Glob(files, "*.yaml")
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	for _, n := range names {
		b, err := files.ReadFile(n)
		if err != nil {
			return nil, err
		}
		out[n] = b
	}
	return out, nil
}

// Load parses the embedded CRDs, sorted by name.
func Load() ([]apiextensionsv1.CustomResourceDefinition, error) {
	fm, err := Files()
	if err != nil {
		return nil, err
	}
	var crds []apiextensionsv1.CustomResourceDefinition
	for name, b := range fm {
		var crd apiextensionsv1.CustomResourceDefinition
		if err := yaml.UnmarshalStrict(b, &crd); err != nil {
			return nil, fmt.Errorf("embedded %s: %w", name, err)
		}
		crds = append(crds, crd)
	}
	sort.Slice(crds, func(i, j int) bool { return crds[i].Name < crds[j].Name })
	return crds, nil
}
