// Command lintmanifests supports `make lint-manifests`.
//
//	lintmanifests render [-namespace demo] [-envoy-image IMAGE]
//
// prints, as YAML, the Deployments, Services and NetworkPolicies the operator
// writes for config/samples (the seed mesh of `make demo`), built by
// internal/objects exactly as the controllers build them (the bootstrap hash
// aside, which only changes an annotation).
//
//	kube-score score --output-format ci FILES... | lintmanifests check FILES...
//
// reads kube-score's CI output and fails on any CRITICAL finding about what the
// operator controls: the Envoy containers (sidecar and gateway), the manager
// container, and every pod- or object-level field of the objects it writes. A
// CRITICAL finding about one of the user's own containers (any other container of
// a MeshService's pod template) is printed but does not fail. docs/lint.md lists
// the findings ignored on purpose, and why. Every Deployment, Service and
// NetworkPolicy of FILES must appear in the output, so that a kube-score that
// read nothing does not pass.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
	"github.com/envoymesh/envoymesh-operator/internal/objects"
)

// defaultEnvoyImage is main.DefaultEnvoyImage (package main cannot be imported).
const defaultEnvoyImage = "envoyproxy/envoy:distroless-v1.40.0"

// managerContainer is the manager's container in config/manager.
const managerContainer = "manager"

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: lintmanifests render|check [flags]")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "render":
		fs := flag.NewFlagSet("render", flag.ExitOnError)
		ns := fs.String("namespace", "demo", "namespace the samples are applied to")
		image := fs.String("envoy-image", defaultEnvoyImage, "the operator's --envoy-image")
		samples := fs.String("samples", "config/samples", "directory of the sample ServiceMesh and MeshServices")
		_ = fs.Parse(os.Args[2:])
		if err := render(os.Stdout, *samples, *ns, *image); err != nil {
			fmt.Fprintln(os.Stderr, "lintmanifests render:", err)
			os.Exit(1)
		}
	case "check":
		want, err := scored(os.Args[2:])
		if err != nil {
			fmt.Fprintln(os.Stderr, "lintmanifests check:", err)
			os.Exit(1)
		}
		failed, err := check(os.Stdin, os.Stdout, want)
		if err != nil {
			fmt.Fprintln(os.Stderr, "lintmanifests check:", err)
			os.Exit(1)
		}
		if failed > 0 {
			fmt.Printf("lint-manifests: %d CRITICAL finding(s) on what the operator controls\n", failed)
			os.Exit(1)
		}
		fmt.Println("lint-manifests: no CRITICAL finding on what the operator controls")
	default:
		fmt.Fprintln(os.Stderr, "usage: lintmanifests render|check [flags]")
		os.Exit(2)
	}
}

// render writes the objects the controllers would apply for the samples.
func render(w io.Writer, dir, ns, image string) error {
	var meshes []*meshv1alpha1.ServiceMesh
	var services []*meshv1alpha1.MeshService
	files, err := filepath.Glob(filepath.Join(dir, "mesh_v1alpha1_*.yaml"))
	if err != nil {
		return err
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		for _, doc := range bytes.Split(data, []byte("\n---\n")) {
			var tm struct{ Kind string }
			if err := yaml.Unmarshal(doc, &tm); err != nil {
				return fmt.Errorf("%s: %w", f, err)
			}
			switch tm.Kind {
			case "ServiceMesh":
				m := &meshv1alpha1.ServiceMesh{}
				if err := yaml.UnmarshalStrict(doc, m); err != nil {
					return fmt.Errorf("%s: %w", f, err)
				}
				m.Namespace, m.UID = ns, "lint"
				meshes = append(meshes, m)
			case "MeshService":
				ms := &meshv1alpha1.MeshService{}
				if err := yaml.UnmarshalStrict(doc, ms); err != nil {
					return fmt.Errorf("%s: %w", f, err)
				}
				ms.Namespace, ms.UID = ns, "lint"
				services = append(services, ms)
			}
		}
	}
	if len(meshes) == 0 || len(services) == 0 {
		return fmt.Errorf("no ServiceMesh or no MeshService in %s", dir)
	}
	base := objects.DefaultSidecar(image)
	var objs []client.Object
	for _, mesh := range meshes {
		if mesh.Spec.Gateway != nil && mesh.Spec.Gateway.Enabled {
			objs = append(objs,
				objects.GatewayService(mesh),
				objects.GatewayNetworkPolicy(mesh),
				objects.GatewayDeployment(mesh, objects.ResolveSidecar(base, mesh.Spec.Sidecar), "lint"))
		}
	}
	for _, ms := range services {
		var mesh *meshv1alpha1.ServiceMesh
		for _, m := range meshes {
			if m.Name == ms.Spec.Mesh {
				mesh = m
			}
		}
		var meshSidecar *meshv1alpha1.SidecarSettings
		if mesh != nil {
			meshSidecar = mesh.Spec.Sidecar
		}
		objs = append(objs,
			objects.Service(ms),
			objects.Deployment(ms, objects.ResolveSidecar(base, meshSidecar, ms.Spec.Sidecar), "lint", meshv1alpha1.HasIdentity(mesh)))
		if meshv1alpha1.MTLSModeOf(mesh) == meshv1alpha1.MTLSStrict {
			objs = append(objs, objects.NetworkPolicy(ms))
		}
	}
	for _, obj := range objs {
		body, err := objects.ApplyBody(obj)
		if err != nil {
			return err
		}
		out, err := yaml.Marshal(body.Object)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "---\n%s", out)
	}
	return nil
}

// scored lists "name/namespace kind" of the Deployments, Services and
// NetworkPolicies in files, as kube-score names them.
func scored(files []string) ([]string, error) {
	if len(files) == 0 {
		return nil, fmt.Errorf("no manifest files given")
	}
	var out []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		for _, doc := range bytes.Split(data, []byte("\n---\n")) {
			var obj struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
				Metadata   struct{ Name, Namespace string }
			}
			if err := yaml.Unmarshal(doc, &obj); err != nil {
				return nil, fmt.Errorf("%s: %w", f, err)
			}
			switch obj.Kind {
			case "Deployment", "Service", "NetworkPolicy":
				out = append(out, obj.Metadata.Name+"/"+obj.Metadata.Namespace+" "+obj.APIVersion+"/"+obj.Kind)
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no Deployment, Service or NetworkPolicy in %v", files)
	}
	return out, nil
}

// A line of kube-score's --output-format ci:
// [CRITICAL] name/namespace apps/v1/Deployment: (container) message
// [OK] name/namespace v1/Service
var finding = regexp.MustCompile(`^\[([A-Z]+)\] (\S+) ([^\s:]+)(?::(?: \(([^)]*)\))? (.*))?$`)

// ignored are the CRITICAL findings on what the operator controls that it
// accepts on purpose; docs/lint.md gives each one's reason. A finding is ignored
// when its message is the key and its container (or "" for the pod) is listed.
var ignored = map[string][]string{
	// Images are pinned by tag (IfNotPresent): Always makes every pod start
	// depend on the registry.
	"ImagePullPolicy is not set to Always": {objects.SidecarName, managerContainer},
	// A throttled proxy adds latency to every request of the app.
	"CPU limit is not set": {objects.SidecarName},
	// How much disruption an app tolerates is the user's: spec.disruption asks
	// for a PDB, the demo's samples set none.
	"No matching PodDisruptionBudget was found": {""},
}

// check prints each finding that is not OK or SKIPPED and returns how many of
// them fail: CRITICAL on an operator's container or on the pod or object itself.
func check(r io.Reader, w io.Writer, expect []string) (failed int, err error) {
	seen := map[string]bool{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		m := finding.FindStringSubmatch(line)
		if m == nil {
			if strings.TrimSpace(line) != "" {
				fmt.Fprintln(w, "? "+line)
			}
			continue
		}
		grade, object, container, message := m[1], m[2], m[4], m[5]
		seen[object+" "+m[3]] = true
		if grade == "OK" || grade == "SKIPPED" {
			continue
		}
		switch {
		case grade == "CRITICAL" && slices.Contains(ignored[message], container):
			fmt.Fprintln(w, "  ignored "+line+" (docs/lint.md)")
		case grade != "CRITICAL":
			fmt.Fprintln(w, "  report  "+line)
		case container == "" || container == objects.SidecarName || container == managerContainer:
			failed++
			fmt.Fprintln(w, "  FAIL    "+line)
		default:
			fmt.Fprintln(w, "  user's  "+line)
		}
	}
	if err := sc.Err(); err != nil {
		return failed, err
	}
	for _, o := range expect {
		if !seen[o] {
			return failed, fmt.Errorf("kube-score scored nothing for %s: did it read the manifests?", o)
		}
	}
	return failed, nil
}
