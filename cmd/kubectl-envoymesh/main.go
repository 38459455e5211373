// kubectl-envoymesh is the kubectl plugin of the envoymesh operator: put it on
// the PATH and run `kubectl envoymesh status|check|graph`.
package main

import (
	"fmt"
	"os"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/envoymesh/envoymesh-operator/cmd/kubectl-envoymesh/plugin"
)

func main() {
	cmd := plugin.NewCommand(genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr})
	if err := cmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}
