package plugin

import (
	"context"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
)

// Call states in the graph.
const (
	CallAllowed  = "allowed"
	CallRefused  = "refused"
	CallNotFound = "not found"
	// CallUnknown: the operator has not reported on the call yet.
	CallUnknown = "unknown"
)

// GraphNode is a MeshService or a gateway (Kind Gateway, Name its ServiceMesh).
type GraphNode struct {
	ID        string `json:"id"`
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// External: a callee of another namespace, not itself part of the graph.
	External bool `json:"external,omitempty"`
}

// GraphCall is one declared call: a MeshService's upstream or a gateway route.
type GraphCall struct {
	From string `json:"from"`
	To   string `json:"to"`
	// Port is the caller's localPort (MeshService upstreams); Prefix the route's.
	Port   int32  `json:"port,omitempty"`
	Prefix string `json:"prefix,omitempty"`
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"`
}

// Graph is `graph -o json|yaml`.
type Graph struct {
	Namespace string      `json:"namespace"`
	Nodes     []GraphNode `json:"nodes"`
	Calls     []GraphCall `json:"calls"`
}

func newGraphCommand(o *options) *cobra.Command {
	o = o.perCommand()
	cmd := &cobra.Command{
		Use:   "graph",
		Short: "The declared call graph of a namespace, refused calls marked, as text or Graphviz DOT",
		Long: `The declared call graph of a namespace: its MeshServices and gateways, the calls they declare
(spec.upstreams, spec.gateway.routes) and the state of each as the operator reports it: allowed,
refused (the callee does not consent, or requires mTLS the caller lacks), not found, or unknown.`,
		Example: `  kubectl envoymesh graph -n shop
  kubectl envoymesh graph -n shop -o dot | dot -Tsvg > shop.svg`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(o, "text", "dot", "json", "yaml"); err != nil {
				return err
			}
			ctx, cancel := o.ctx(cmd)
			defer cancel()
			c, err := o.client()
			if err != nil {
				return err
			}
			ns, _, err := o.config.ToRawKubeConfigLoader().Namespace()
			if err != nil {
				return err
			}
			g, err := buildGraph(ctx, c, ns)
			if err != nil {
				return err
			}
			switch o.output {
			case "text":
				return printGraphText(o.out(), g)
			case "dot":
				return printGraphDot(o.out(), g)
			}
			return printStructured(o.out(), o.output, g)
		},
	}
	addOutputFlag(cmd, o, "text", "dot", "json", "yaml")
	return cmd
}

func serviceID(ns, name string) string { return ns + "/" + name }
func gatewayID(ns, name string) string { return "gateway:" + ns + "/" + name }

func buildGraph(ctx context.Context, c client.Client, ns string) (*Graph, error) {
	var services meshv1alpha1.MeshServiceList
	if err := c.List(ctx, &services, client.InNamespace(ns)); err != nil {
		return nil, fmt.Errorf("listing MeshServices: %w", err)
	}
	var meshes meshv1alpha1.ServiceMeshList
	if err := c.List(ctx, &meshes, client.InNamespace(ns)); err != nil {
		return nil, fmt.Errorf("listing ServiceMeshes: %w", err)
	}
	g := &Graph{Namespace: ns, Nodes: []GraphNode{}, Calls: []GraphCall{}}
	known := map[string]bool{}
	for _, ms := range services.Items {
		id := serviceID(ms.Namespace, ms.Name)
		known[id] = true
		g.Nodes = append(g.Nodes, GraphNode{ID: id, Kind: "MeshService", Namespace: ms.Namespace, Name: ms.Name})
	}
	for i := range meshes.Items {
		m := &meshes.Items[i]
		if m.Spec.Gateway == nil || !m.Spec.Gateway.Enabled {
			continue
		}
		id := gatewayID(m.Namespace, m.Name)
		g.Nodes = append(g.Nodes, GraphNode{ID: id, Kind: "Gateway", Namespace: m.Namespace, Name: m.Name})
		g.Calls = append(g.Calls, gatewayCalls(m, id, func(key types.NamespacedName) bool {
			return c.Get(ctx, key, &meshv1alpha1.MeshService{}) == nil
		})...)
	}
	for i := range services.Items {
		g.Calls = append(g.Calls, serviceCalls(&services.Items[i])...)
	}
	for _, call := range g.Calls {
		if !known[call.To] {
			known[call.To] = true
			callNS, name, _ := strings.Cut(call.To, "/")
			g.Nodes = append(g.Nodes, GraphNode{ID: call.To, Kind: "MeshService", Namespace: callNS, Name: name, External: callNS != ns || call.State == CallNotFound})
		}
	}
	sort.SliceStable(g.Nodes, func(i, j int) bool {
		a, b := g.Nodes[i], g.Nodes[j]
		if a.External != b.External {
			return !a.External
		}
		if a.Kind != b.Kind {
			return a.Kind == "Gateway"
		}
		return a.ID < b.ID
	})
	return g, nil
}

// gatewayCalls are a gateway's routes; RoutesResolved names the refused
// (NotAllowed) and missing (RouteNotFound) targets.
// exists says whether a MeshService exists (asked only when RoutesResolved is
// NotAllowed, which names the refused targets but not the missing ones).
func gatewayCalls(m *meshv1alpha1.ServiceMesh, from string, exists func(types.NamespacedName) bool) []GraphCall {
	cond := meta.FindStatusCondition(m.Status.Conditions, "RoutesResolved")
	named := map[string]bool{}
	if cond != nil && cond.Status == metav1.ConditionFalse {
		for _, n := range bracketList(cond.Message) {
			named[n] = true
		}
	}
	var calls []GraphCall
	for _, r := range m.Spec.Gateway.Routes {
		ns := r.Namespace
		if ns == "" {
			ns = m.Namespace
		}
		to := serviceID(ns, r.Service)
		call := GraphCall{From: from, To: to, Prefix: r.Prefix}
		switch {
		case cond == nil:
			call.State = CallUnknown
		case cond.Status == metav1.ConditionTrue:
			call.State = CallAllowed
		case named[to] && cond.Reason == "NotAllowed":
			call.State = CallRefused
			call.Reason = fmt.Sprintf("%s does not consent to this gateway: it needs spec.allowFrom {namespace: %s}; the route answers 403", to, m.Namespace)
		case named[to] && cond.Reason == "RouteNotFound":
			call.State = CallNotFound
			call.Reason = "no such MeshService; the route answers 503"
		case cond.Reason == "NotAllowed" && !exists(types.NamespacedName{Namespace: ns, Name: r.Service}):
			call.State = CallNotFound
			call.Reason = "no such MeshService; the route answers 503"
		default:
			call.State = CallAllowed
		}
		calls = append(calls, call)
	}
	return calls
}

var bracketRE = regexp.MustCompile(`\[([^\]]*)\]`)

// bracketList is the names in the first "[a/b c/d]" of a condition message.
func bracketList(msg string) []string {
	m := bracketRE.FindStringSubmatch(msg)
	if m == nil {
		return nil
	}
	return strings.Fields(m[1])
}

// serviceCalls are a MeshService's upstreams, as status.upstreams and
// UpstreamsAuthorized report them.
func serviceCalls(ms *meshv1alpha1.MeshService) []GraphCall {
	from := serviceID(ms.Namespace, ms.Name)
	reported := map[string]meshv1alpha1.UpstreamStatus{}
	for _, u := range ms.Status.Upstreams {
		reported[serviceID(u.Namespace, u.Name)] = u
	}
	authz := meta.FindStatusCondition(ms.Status.Conditions, meshv1alpha1.ConditionUpstreamsAuthorized)
	var refusedIDs []string
	for _, u := range ms.Status.Upstreams {
		if u.Resolved && !u.Authorized {
			refusedIDs = append(refusedIDs, serviceID(u.Namespace, u.Name))
		}
	}
	var calls []GraphCall
	for _, up := range ms.Spec.Upstreams {
		ns := up.Namespace
		if ns == "" {
			ns = ms.Namespace
		}
		to := serviceID(ns, up.Name)
		call := GraphCall{From: from, To: to, Port: up.LocalPort}
		u, ok := reported[to]
		switch {
		case !ok:
			call.State = CallUnknown
		case !u.Resolved:
			call.State = CallNotFound
			call.Reason = "no such MeshService; its listener answers 503"
		case authz == nil:
			// An operator without authorization reports no verdict.
			call.State = CallUnknown
		case authz.Status == metav1.ConditionTrue || u.Authorized:
			call.State = CallAllowed
		default:
			call.State = CallRefused
			call.Reason = refusalReason(authz.Message, to, refusedIDs)
		}
		calls = append(calls, call)
	}
	return calls
}

// refusalReason cuts the reason naming callee out of UpstreamsAuthorized's
// message, "[<ns>/<name> does not consent ... <ns2>/<name2> requires mTLS ...]".
func refusalReason(msg, callee string, refused []string) string {
	start := strings.Index(msg, callee+" ")
	if start < 0 {
		return "the callee will refuse this caller (UpstreamsAuthorized)"
	}
	end := strings.LastIndex(msg, "]")
	if end < start {
		end = len(msg)
	}
	for _, other := range refused {
		if other == callee {
			continue
		}
		if i := strings.Index(msg[start+1:], " "+other+" "); i >= 0 && start+1+i < end {
			end = start + 1 + i
		}
	}
	return strings.TrimSpace(msg[start:end])
}

func (g *Graph) node(id string) GraphNode {
	for _, n := range g.Nodes {
		if n.ID == id {
			return n
		}
	}
	return GraphNode{ID: id}
}

// label is a node as the text output names it: the bare name inside the
// graph's namespace, ns/name outside, gateway/<mesh> for a gateway.
func (g *Graph) label(id string) string {
	n := g.node(id)
	switch {
	case n.Kind == "Gateway":
		return "gateway/" + n.Name
	case n.Namespace == g.Namespace:
		return n.Name
	}
	return n.ID
}

func printGraphText(w io.Writer, g *Graph) error {
	var services, gateways int
	for _, n := range g.Nodes {
		switch {
		case n.External:
		case n.Kind == "Gateway":
			gateways++
		default:
			services++
		}
	}
	refused := 0
	for _, c := range g.Calls {
		if c.State == CallRefused {
			refused++
		}
	}
	fmt.Fprintf(w, "Namespace %s: %s, %s, %s (%d refused)\n", g.Namespace,
		plural(services, "MeshService"), plural(gateways, "gateway"), plural(len(g.Calls), "call"), refused)
	for _, n := range g.Nodes {
		if n.External {
			continue
		}
		fmt.Fprintf(w, "\n%s\n", g.label(n.ID))
		var rows [][]string
		for _, c := range g.Calls {
			if c.From != n.ID {
				continue
			}
			via := ""
			switch {
			case c.Prefix != "":
				via = c.Prefix
			case c.Port != 0:
				via = fmt.Sprintf(":%d", c.Port)
			}
			state := c.State
			if c.State != CallAllowed {
				state = strings.ToUpper(state)
			}
			if c.Reason != "" {
				state += ": " + c.Reason
			}
			rows = append(rows, []string{"  " + via, "-> " + g.label(c.To), state})
		}
		if len(rows) == 0 {
			fmt.Fprintln(w, "  (no calls)")
			continue
		}
		if err := tableNoHeader(w, rows); err != nil {
			return err
		}
	}
	return nil
}

func tableNoHeader(w io.Writer, rows [][]string) error {
	var b strings.Builder
	if err := table(&b, []string{"", "", ""}, rows); err != nil {
		return err
	}
	_, rest, _ := strings.Cut(b.String(), "\n")
	_, err := io.WriteString(w, rest)
	return err
}

func printGraphDot(w io.Writer, g *Graph) error {
	q := func(s string) string { return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"` }
	var b strings.Builder
	fmt.Fprintf(&b, "digraph %s {\n", q(g.Namespace))
	b.WriteString("  rankdir=LR;\n  node [shape=box, style=rounded];\n")
	for _, n := range g.Nodes {
		attrs := []string{"label=" + q(g.label(n.ID))}
		switch {
		case n.Kind == "Gateway":
			attrs = append(attrs, "shape=house")
		case n.External:
			attrs = append(attrs, `style="rounded,dashed"`)
		}
		fmt.Fprintf(&b, "  %s [%s];\n", q(n.ID), strings.Join(attrs, ", "))
	}
	for _, c := range g.Calls {
		label := c.Prefix
		if c.Port != 0 {
			label = fmt.Sprintf(":%d", c.Port)
		}
		attrs := []string{}
		switch c.State {
		case CallRefused:
			label += " refused"
			attrs = append(attrs, "color=red", "fontcolor=red", "style=dashed")
		case CallNotFound:
			label += " not found"
			attrs = append(attrs, "color=orange", "fontcolor=orange", "style=dashed")
		case CallUnknown:
			attrs = append(attrs, "color=gray")
		}
		if c.Reason != "" {
			attrs = append(attrs, "tooltip="+q(c.Reason))
		}
		attrs = append([]string{"label=" + q(strings.TrimSpace(label))}, attrs...)
		fmt.Fprintf(&b, "  %s -> %s [%s];\n", q(c.From), q(c.To), strings.Join(attrs, ", "))
	}
	b.WriteString("}\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func plural(n int, what string) string {
	if n == 1 {
		return fmt.Sprintf("1 %s", what)
	}
	return fmt.Sprintf("%d %ss", n, what)
}
