// Package plugin is the kubectl plugin kubectl-envoymesh: `status` (one row per
// proxy), `check` (what is wrong with the installation, and how to fix it) and
// `graph` (the declared call graph of a namespace). It follows kubectl plugin
// conventions: the k8s.io/cli-runtime connection flags (--kubeconfig,
// --context, --namespace, ...), --all-namespaces, and -o for the output format.
package plugin

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
)

// options are what every subcommand shares.
type options struct {
	config        *genericclioptions.ConfigFlags
	streams       genericiooptions.IOStreams
	allNamespaces bool
	output        string
	now           func() time.Time
}

// NewCommand is `kubectl envoymesh`.
func NewCommand(streams genericiooptions.IOStreams) *cobra.Command {
	return newCommand(streams, time.Now)
}

// newCommand is NewCommand with a clock (tests).
func newCommand(streams genericiooptions.IOStreams, now func() time.Time) *cobra.Command {
	o := &options{
		config:  genericclioptions.NewConfigFlags(true),
		streams: streams,
		now:     now,
	}
	cmd := &cobra.Command{
		Use:           "kubectl-envoymesh",
		Short:         "Inspect an envoymesh service mesh: proxy status, installation checks, the call graph",
		SilenceUsage:  true,
		SilenceErrors: true,
		Annotations:   map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl envoymesh"},
	}
	cmd.SetOut(streams.Out)
	cmd.SetErr(streams.ErrOut)
	o.config.AddFlags(cmd.PersistentFlags())
	cmd.AddCommand(newStatusCommand(o), newCheckCommand(o), newGraphCommand(o))
	return cmd
}

// scheme knows every kind the plugin reads.
func scheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, meshv1alpha1.AddToScheme, apiextensionsv1.AddToScheme} {
		if err := add(s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (o *options) client() (client.Client, error) {
	cfg, err := o.config.ToRESTConfig()
	if err != nil {
		return nil, err
	}
	s, err := scheme()
	if err != nil {
		return nil, err
	}
	return client.New(cfg, client.Options{Scheme: s})
}

// namespace is the namespace to list in: "" with --all-namespaces, else
// --namespace or the kubeconfig context's namespace.
func (o *options) namespace() (string, error) {
	if o.allNamespaces {
		return "", nil
	}
	ns, _, err := o.config.ToRawKubeConfigLoader().Namespace()
	return ns, err
}

// explicitNamespace is --namespace when given on the command line.
func (o *options) explicitNamespace() string {
	if o.config.Namespace == nil {
		return ""
	}
	return *o.config.Namespace
}

func addOutputFlag(cmd *cobra.Command, o *options, formats ...string) {
	cmd.Flags().StringVarP(&o.output, "output", "o", formats[0], fmt.Sprintf("Output format: one of %v", formats))
}

func checkOutput(o *options, formats ...string) error {
	for _, f := range formats {
		if o.output == f {
			return nil
		}
	}
	return fmt.Errorf("unknown output format %q: use one of %v", o.output, formats)
}

func addAllNamespacesFlag(cmd *cobra.Command, o *options) {
	cmd.Flags().BoolVarP(&o.allNamespaces, "all-namespaces", "A", false,
		"If present, list across all namespaces; --namespace is ignored")
}

// ctx bounds every command's API calls.
func (o *options) ctx(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	parent := cmd.Context()
	if parent == nil {
		parent = context.Background()
	}
	return context.WithTimeout(parent, time.Minute)
}

// out is where results go.
func (o *options) out() io.Writer { return o.streams.Out }

// perCommand is a copy of o for one subcommand, whose own flags (-o, -A) it
// binds; the connection flags stay shared.
func (o *options) perCommand() *options {
	c := *o
	return &c
}
