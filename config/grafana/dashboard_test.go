package grafana

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const dashboardFile = "envoymesh-dashboard.json"

// fixtureSeries reads the recorded /stats/prometheus answers in testdata (see
// testdata/SOURCES.md): every series and family name, and every label name.
func fixtureSeries(t *testing.T) (names, labels map[string]bool) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "stats_prometheus*.txt"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no recorded Prometheus output in testdata (%v)", err)
	}
	names, labels = map[string]bool{}, map[string]bool{}
	labelName := regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="`)
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			switch {
			case strings.HasPrefix(line, "# TYPE "), strings.HasPrefix(line, "# HELP "):
				if fs := strings.Fields(line); len(fs) >= 3 {
					names[fs[2]] = true
				}
			case line == "" || strings.HasPrefix(line, "#"):
			default:
				end := strings.IndexAny(line, "{ ")
				if end < 0 {
					continue
				}
				names[line[:end]] = true
				if brace := strings.IndexByte(line, '{'); brace == end {
					for _, m := range labelName.FindAllStringSubmatch(line[brace:], -1) {
						labels[m[1]] = true
					}
				}
			}
		}
		fh.Close()
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return names, labels
}

// queries are every PromQL expression of the dashboard: the panels' targets
// (nested rows included) and the query variables'.
func queries(t *testing.T, data []byte) []string {
	t.Helper()
	var dash struct {
		Panels     []json.RawMessage `json:"panels"`
		Templating struct {
			List []struct {
				Type  string          `json:"type"`
				Name  string          `json:"name"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var out []string
	var walk func(raw []json.RawMessage)
	walk = func(raw []json.RawMessage) {
		for _, r := range raw {
			var p struct {
				Panels  []json.RawMessage `json:"panels"`
				Targets []struct {
					Expr string `json:"expr"`
				} `json:"targets"`
			}
			if err := json.Unmarshal(r, &p); err != nil {
				t.Fatal(err)
			}
			for _, tg := range p.Targets {
				out = append(out, tg.Expr)
			}
			walk(p.Panels)
		}
	}
	walk(dash.Panels)
	for _, v := range dash.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			var s string
			if json.Unmarshal(v.Query, &s) != nil {
				t.Fatalf("variable %s: query is neither an object nor a string", v.Name)
			}
			q.Query = s
		}
		out = append(out, q.Query)
	}
	return out
}

var (
	stringLit   = regexp.MustCompile("\"(?:[^\"\\\\]|\\\\.)*\"|'(?:[^'\\\\]|\\\\.)*'|`[^`]*`")
	matchers    = regexp.MustCompile(`\{[^}]*\}`)
	matcherName = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)`)
	ranges      = regexp.MustCompile(`\[[^\]]*\]`)
	grouping    = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	variables   = regexp.MustCompile(`\$\{[^}]*\}|\$[a-zA-Z_][a-zA-Z0-9_]*`)
	tokens      = regexp.MustCompile(`[0-9][0-9.eE+]*[a-zA-Z]*|[a-zA-Z_:][a-zA-Z0-9_:]*`)
	labelValues = regexp.MustCompile(`^\s*label_values\((.*)\)\s*$`)
	keywords    = map[string]bool{
		"and": true, "or": true, "unless": true, "by": true, "without": true, "on": true, "ignoring": true,
		"group_left": true, "group_right": true, "offset": true, "bool": true, "inf": true, "nan": true, "atan2": true,
	}
)

// metricNames parses the metric names out of one PromQL expression (or
// Grafana's label_values(expr, label)): the identifiers that are not a
// function or aggregation (followed by "("), a keyword, a grouping's label
// list, a label matcher, a range, a string or a Grafana variable. labels are
// the label names its matchers use.
func metricNames(expr string) (names, labels []string) {
	if m := labelValues.FindStringSubmatch(expr); m != nil {
		inner := m[1]
		i := strings.LastIndexByte(inner, ',')
		if i < 0 {
			return nil, nil // label_values(label): no metric
		}
		expr = inner[:i]
		labels = append(labels, strings.TrimSpace(inner[i+1:]))
	}
	expr = stringLit.ReplaceAllString(expr, `""`)
	for _, m := range matchers.FindAllString(expr, -1) {
		for _, n := range matcherName.FindAllStringSubmatch(m, -1) {
			labels = append(labels, n[1])
		}
	}
	expr = matchers.ReplaceAllString(expr, " ")
	expr = ranges.ReplaceAllString(expr, " ")
	expr = grouping.ReplaceAllString(expr, " ")
	expr = variables.ReplaceAllString(expr, " ")
	for _, loc := range tokens.FindAllStringIndex(expr, -1) {
		tok := expr[loc[0]:loc[1]]
		if tok[0] >= '0' && tok[0] <= '9' || keywords[strings.ToLower(tok)] {
			continue
		}
		if rest := strings.TrimLeft(expr[loc[1]:], " \t\n"); strings.HasPrefix(rest, "(") {
			continue // a function or an aggregation
		}
		names = append(names, tok)
	}
	return names, labels
}

func TestMetricNames(t *testing.T) {
	for _, c := range []struct {
		expr          string
		names, labels []string
	}{
		{`sum by (namespace, le) (rate(envoy_a_bucket{x="1}", y=~"$v"}[$__rate_interval]))`, []string{"envoy_a_bucket"}, []string{"x", "y"}},
		{"envoy_a / on (pod) group_left (node) envoy_b offset 5m > bool 1e3", []string{"envoy_a", "envoy_b"}, nil},
		{`count by (a) (count_values by (a) ("version", envoy_v{a="x"}))`, []string{"envoy_v"}, []string{"a"}},
		{`time() - (max by (pod) (envoy_t) / 1000)`, []string{"envoy_t"}, nil},
		{`label_values(envoy_live{namespace=~"$namespace"}, app_kubernetes_io_name)`, []string{"envoy_live"}, []string{"namespace", "app_kubernetes_io_name"}},
		{`label_values(namespace)`, nil, nil},
		{`histogram_quantile(0.99, sum(rate(envoy_h_bucket[5m])) by (le))`, []string{"envoy_h_bucket"}, nil},
	} {
		names, labels := metricNames(c.expr)
		slices.Sort(labels)
		want := slices.Clone(c.labels)
		slices.Sort(want)
		if !slices.Equal(names, c.names) || !slices.Equal(labels, want) {
			t.Errorf("%s: names %v labels %v, want %v %v", c.expr, names, labels, c.names, want)
		}
	}
}

// missing lists what the dashboard's queries use that the recorded Envoy
// output lacks: metric names, and the envoy_* tag labels Envoy itself adds.
func missing(t *testing.T, data []byte, names, labels map[string]bool) (metrics, tags []string, used []string) {
	for _, q := range queries(t, data) {
		ns, ls := metricNames(q)
		if len(ns) == 0 {
			t.Errorf("no metric found in query %q", q)
		}
		for _, n := range ns {
			used = append(used, n)
			if !names[n] {
				metrics = append(metrics, n)
			}
		}
		for _, l := range ls {
			if strings.HasPrefix(l, "envoy_") && !labels[l] {
				tags = append(tags, l)
			}
		}
	}
	return metrics, tags, used
}

// TestDashboardQueriesRecordedMetrics fails when the dashboard queries a metric
// (or an Envoy tag label) that a real Envoy's /stats/prometheus does not
// export: a renamed metric fails the build instead of an empty panel.
func TestDashboardQueriesRecordedMetrics(t *testing.T) {
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	names, labels := fixtureSeries(t)
	metrics, tags, used := missing(t, data, names, labels)
	if len(metrics) > 0 {
		t.Errorf("the dashboard queries metrics the recorded Envoy output does not have: %v", metrics)
	}
	if len(tags) > 0 {
		t.Errorf("the dashboard matches Envoy tag labels the recorded Envoy output does not have: %v", tags)
	}
	for _, want := range []string{
		"envoy_http_downstream_rq_total", "envoy_http_downstream_rq_xx", "envoy_http_downstream_rq_time_bucket",
		"envoy_listener_manager_lds_update_rejected", "envoy_cluster_manager_cds_update_rejected",
	} {
		if !slices.Contains(used, want) {
			t.Errorf("the dashboard no longer queries %s (request rate, errors, latency, config sync)", want)
		}
	}

	// The check would catch a rename.
	renamed := strings.ReplaceAll(string(data), "envoy_http_downstream_rq_total", "envoy_http_downstream_rq_count_total")
	if metrics, _, _ := missing(t, []byte(renamed), names, labels); !slices.Contains(metrics, "envoy_http_downstream_rq_count_total") {
		t.Errorf("a renamed metric went unnoticed: %v", metrics)
	}
}

// TestDashboardShape checks that every panel reads the ${DS_PROMETHEUS}
// datasource variable and that the ids are unique.
func TestDashboardShape(t *testing.T) {
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID    string `json:"uid"`
		Panels []struct {
			ID         int    `json:"id"`
			Type       string `json:"type"`
			Title      string `json:"title"`
			Datasource *struct {
				UID string `json:"uid"`
			} `json:"datasource"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Type, Name string
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatal(err)
	}
	if dash.UID == "" {
		t.Error("no uid")
	}
	if !slices.ContainsFunc(dash.Templating.List, func(v struct{ Type, Name string }) bool {
		return v.Type == "datasource" && v.Name == "DS_PROMETHEUS"
	}) {
		t.Error("no datasource variable DS_PROMETHEUS")
	}
	ids := map[int]bool{}
	for _, p := range dash.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type != "row" && (p.Datasource == nil || p.Datasource.UID != "${DS_PROMETHEUS}") {
			t.Errorf("panel %q does not use ${DS_PROMETHEUS}", p.Title)
		}
	}
}
