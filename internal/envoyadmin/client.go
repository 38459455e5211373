package envoyadmin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// DefaultTimeout bounds each request when NewClient is given none. A sidecar that cannot answer a
// filtered query in this time is reported as unreachable rather than holding up the prober.
const DefaultTimeout = 2 * time.Second

// Paths the status listener forwards. statsQuery carries StatsFilter so that Client never asks for
// the unfiltered /stats.
const (
	pathServerInfo = "/server_info"
	pathStats      = "/stats"
	pathClusters   = "/clusters"
	pathCerts      = "/certs"
)

var (
	statsQuery    = url.Values{"format": {"json"}, "filter": {StatsFilter}}.Encode()
	clustersQuery = url.Values{"format": {"json"}}.Encode()
)

// StatusError is the error for an unexpected HTTP status, so callers can tell "reachable but
// unhappy" from a network failure with errors.As.
type StatusError struct {
	Path       string
	StatusCode int
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("envoyadmin: GET %s: unexpected status %d %s", e.Path, e.StatusCode, http.StatusText(e.StatusCode))
}

// Observation is what one probe of a sidecar saw.
type Observation struct {
	// State is the server state from /server_info, one of the State* constants.
	State string
	// EnvoyVersion is the semantic version of the Envoy build, or its raw build string when that
	// holds no semantic version.
	EnvoyVersion string
	// LDSVersion and CDSVersion are the version_info of the last accepted LDS and CDS updates.
	LDSVersion string
	CDSVersion string
	// LDSRejected and CDSRejected count rejected updates (NACKs) since the proxy started.
	LDSRejected uint64
	CDSRejected uint64
	// Clusters is the host health of every upstream cluster, sorted by name.
	Clusters []ClusterHealth
	// CertificateExpiry is when the sidecar's identity certificate expires (Certificate.Expiry);
	// zero when it has none.
	CertificateExpiry time.Time
	// Denied and AuditDenied are Stats.Denied and Stats.AuditDenied: inbound requests and
	// connections refused, and those Enforce would refuse in Audit mode, since the proxy started.
	Denied      uint64
	AuditDenied uint64
}

// Client queries sidecar status listeners. It is safe for concurrent use.
type Client struct {
	httpClient *http.Client
	timeout    time.Duration
}

// NewClient returns a Client that bounds every request by timeout (DefaultTimeout if <= 0) and
// sends it with httpClient (NewHTTPClient() if nil).
func NewClient(httpClient *http.Client, timeout time.Duration) *Client {
	if httpClient == nil {
		httpClient = NewHTTPClient()
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &Client{httpClient: httpClient, timeout: timeout}
}

// NewHTTPClient returns an http.Client suited to polling many pods: no proxy from the environment
// (pod IPs must be dialled directly), a small idle pool with keep-alives so that periodic polls reuse
// connections, and no redirects, since a status listener never sends one and following it could
// send the request somewhere other than the pod.
func NewHTTPClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy: nil,
			DialContext: (&net.Dialer{
				Timeout:   DefaultTimeout,
				KeepAlive: 30 * time.Second,
			}).DialContext,
			MaxIdleConns:        64,
			MaxIdleConnsPerHost: 1,
			IdleConnTimeout:     30 * time.Second,
			DisableCompression:  true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// Probe reads /server_info, the filtered /stats, /clusters and /certs from the status listener at
// baseURL (e.g. "http://10.0.0.5:15021"). Each request gets its own deadline, so a hung sidecar
// costs at most the timeout per request. It stops at the first error; a 404 from /certs is none
// (see Certs).
func (c *Client) Probe(ctx context.Context, baseURL string) (Observation, error) {
	info, err := c.ServerInfo(ctx, baseURL)
	if err != nil {
		return Observation{}, err
	}
	stats, err := c.Stats(ctx, baseURL)
	if err != nil {
		return Observation{}, err
	}
	clusters, err := c.Clusters(ctx, baseURL)
	if err != nil {
		return Observation{}, err
	}
	cert, err := c.Certs(ctx, baseURL)
	if err != nil {
		return Observation{}, err
	}
	version := info.Version
	if version == "" {
		version = info.RawVersion
	}
	return Observation{
		State:             info.State,
		EnvoyVersion:      version,
		LDSVersion:        stats.LDS.VersionText,
		CDSVersion:        stats.CDS.VersionText,
		LDSRejected:       stats.LDS.UpdateRejected,
		CDSRejected:       stats.CDS.UpdateRejected,
		Clusters:          clusters,
		CertificateExpiry: cert.Expiry,
		Denied:            stats.Denied,
		AuditDenied:       stats.AuditDenied,
	}, nil
}

// ServerInfo fetches and parses GET /server_info.
func (c *Client) ServerInfo(ctx context.Context, baseURL string) (ServerInfo, error) {
	var out ServerInfo
	err := c.get(ctx, baseURL, pathServerInfo, "", func(r io.Reader) (err error) {
		out, err = ParseServerInfo(r)
		return err
	}, http.StatusOK)
	return out, err
}

// Stats fetches and parses GET /stats?format=json&filter=StatsFilter.
func (c *Client) Stats(ctx context.Context, baseURL string) (Stats, error) {
	var out Stats
	err := c.get(ctx, baseURL, pathStats, statsQuery, func(r io.Reader) (err error) {
		out, err = ParseStats(r)
		return err
	}, http.StatusOK)
	return out, err
}

// Clusters fetches and parses GET /clusters?format=json.
func (c *Client) Clusters(ctx context.Context, baseURL string) ([]ClusterHealth, error) {
	var out []ClusterHealth
	err := c.get(ctx, baseURL, pathClusters, clustersQuery, func(r io.Reader) (err error) {
		out, err = ParseClusters(r)
		return err
	}, http.StatusOK)
	return out, err
}

// Certs fetches and parses GET /certs. A 404 is no certificate rather than an error: a sidecar
// whose status listener predates the /certs route cannot have one to report.
func (c *Client) Certs(ctx context.Context, baseURL string) (Certificate, error) {
	var out Certificate
	err := c.get(ctx, baseURL, pathCerts, "", func(r io.Reader) (err error) {
		out, err = ParseCerts(r)
		return err
	}, http.StatusOK)
	var se *StatusError
	if errors.As(err, &se) && se.StatusCode == http.StatusNotFound {
		return Certificate{}, nil
	}
	return out, err
}

// get sends one GET under its own deadline and parses the body while the deadline still applies,
// so a server that stalls mid-body is cut off too.
func (c *Client) get(ctx context.Context, baseURL, path, query string, parse func(io.Reader) error, okStatus ...int) error {
	u, err := requestURL(baseURL, path, query)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("envoyadmin: GET %s: %w", path, err)
	}
	resp, err := c.httpClient.Do(req)
	if err != nil {
		return fmt.Errorf("envoyadmin: GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	ok := false
	for _, s := range okStatus {
		ok = ok || resp.StatusCode == s
	}
	if !ok {
		return &StatusError{Path: path, StatusCode: resp.StatusCode}
	}
	// The parsers' errors already name the endpoint.
	return parse(resp.Body)
}

// requestURL checks baseURL before anything is sent: it must be an absolute http(s) URL of a host
// with no path of its own.
func requestURL(baseURL, path, query string) (string, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return "", fmt.Errorf("envoyadmin: bad base URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("envoyadmin: bad base URL %q: want http://host:port", baseURL)
	}
	if strings.Trim(u.Path, "/") != "" || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("envoyadmin: bad base URL %q: must not have a path, query or fragment", baseURL)
	}
	u.Path = path
	u.RawPath = ""
	u.RawQuery = query
	return u.String(), nil
}
