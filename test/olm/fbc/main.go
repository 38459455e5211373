// Command fbc renders a file-based catalog (FBC) for OLM from the bundle
// directory without a registry: `opm render` of a bundle needs an image, so the
// catalog is written by hand as opm's declcfg schema describes it — olm.package,
// olm.channel and an olm.bundle whose manifests are inline olm.bundle.object
// properties and whose image is empty. An empty image makes opm serve the bundle
// with its objects embedded (api.Bundle.BundlePath == ""), so OLM installs it
// from the catalog without a bundle-unpack Job (which would need a real kubelet).
//
//	go run ./test/olm/fbc -bundle bundle -out bin/state/olm/catalog
package main

import (
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

func main() {
	bundleDir := flag.String("bundle", "bundle", "The bundle directory (manifests/ and metadata/).")
	out := flag.String("out", "catalog", "The catalog directory to write (index.json inside).")
	flag.Parse()
	if err := run(*bundleDir, *out); err != nil {
		log.Fatal(err)
	}
}

type property struct {
	Type  string `json:"type"`
	Value any    `json:"value"`
}

func run(bundleDir, out string) error {
	var meta struct {
		Annotations map[string]string `json:"annotations"`
	}
	b, err := os.ReadFile(filepath.Join(bundleDir, "metadata", "annotations.yaml"))
	if err != nil {
		return err
	}
	if err := yaml.Unmarshal(b, &meta); err != nil {
		return err
	}
	pkg := meta.Annotations["operators.operatorframework.io.bundle.package.v1"]
	channel := strings.Split(meta.Annotations["operators.operatorframework.io.bundle.channels.v1"], ",")[0]
	defaultChannel := meta.Annotations["operators.operatorframework.io.bundle.channel.default.v1"]
	if defaultChannel == "" {
		defaultChannel = channel
	}

	files, err := filepath.Glob(filepath.Join(bundleDir, "manifests", "*.yaml"))
	if err != nil {
		return err
	}
	sort.Strings(files)
	var csvName, version string
	var props, objects []property
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		j, err := yaml.YAMLToJSON(raw)
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		var obj struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
			Spec struct {
				Version string `json:"version"`
				Group   string `json:"group"`
				Names   struct {
					Kind string `json:"kind"`
				} `json:"names"`
				Versions []struct {
					Name string `json:"name"`
				} `json:"versions"`
			} `json:"spec"`
		}
		if err := json.Unmarshal(j, &obj); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		switch obj.Kind {
		case "ClusterServiceVersion":
			csvName, version = obj.Metadata.Name, obj.Spec.Version
		case "CustomResourceDefinition":
			for _, v := range obj.Spec.Versions {
				props = append(props, property{"olm.gvk", map[string]string{"group": obj.Spec.Group, "kind": obj.Spec.Names.Kind, "version": v.Name}})
			}
		}
		objects = append(objects, property{"olm.bundle.object", map[string]string{"data": base64.StdEncoding.EncodeToString(j)}})
	}
	if csvName == "" || pkg == "" || channel == "" {
		return fmt.Errorf("%s: no ClusterServiceVersion, package or channel found", bundleDir)
	}
	props = append([]property{{"olm.package", map[string]string{"packageName": pkg, "version": version}}}, props...)
	props = append(props, objects...)

	blobs := []any{
		map[string]any{"schema": "olm.package", "name": pkg, "defaultChannel": defaultChannel},
		map[string]any{"schema": "olm.channel", "package": pkg, "name": channel, "entries": []any{map[string]string{"name": csvName}}},
		map[string]any{"schema": "olm.bundle", "package": pkg, "name": csvName, "image": "", "properties": props},
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(out, "index.json"))
	if err != nil {
		return err
	}
	defer f.Close()
	enc := json.NewEncoder(f)
	for _, blob := range blobs {
		if err := enc.Encode(blob); err != nil {
			return err
		}
	}
	fmt.Printf("wrote %s: package %s, channel %s, bundle %s (%d objects inline)\n", filepath.Join(out, "index.json"), pkg, channel, csvName, len(objects))
	return nil
}
