// Package bundle validates the committed OLM bundle (../../bundle) the way OLM's
// tooling does, without a cluster or a container engine. It is its own module so
// that operator-framework's dependencies never reach the operator's go.mod.
package bundle

import (
	"fmt"
	"os"
	"path/filepath"

	registrybundle "github.com/operator-framework/operator-registry/pkg/lib/bundle"
	"sigs.k8s.io/yaml"
)

// ReadAnnotations returns the annotations of bundleRoot/metadata/annotations.yaml.
func ReadAnnotations(bundleRoot string) (map[string]string, error) {
	data, err := os.ReadFile(filepath.Join(bundleRoot, registrybundle.MetadataDir, registrybundle.AnnotationsFile))
	if err != nil {
		return nil, err
	}
	var meta registrybundle.AnnotationMetadata
	if err := yaml.Unmarshal(data, &meta); err != nil {
		return nil, fmt.Errorf("%s: %w", registrybundle.AnnotationsFile, err)
	}
	return meta.Annotations, nil
}
