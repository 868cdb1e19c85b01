package admin

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"gatehouse/internal/capacity"
	"gatehouse/internal/certs"
)

// Client talks to a Gatehouse admin API.
type Client struct {
	base  string
	token string
	http  *http.Client
}

// NewClient returns a client for the admin API at baseURL
// ("https://127.0.0.1:9443"); an http:// URL is refused, as it would send
// the token in clear. caPEM, if not empty, is the only trusted root
// for the API's certificate (the self-signed admin certificate a node writes
// into its data directory); otherwise the system roots are used.
func NewClient(baseURL, token string, caPEM []byte) (*Client, error) {
	u, err := url.Parse(baseURL)
	switch {
	case err == nil && u.Scheme == "http":
		return nil, fmt.Errorf("admin URL %q: http:// would send the admin token in clear; the admin API serves HTTPS only: use https://%s", baseURL, u.Host)
	case err != nil || u.Scheme != "https" || u.Host == "":
		return nil, fmt.Errorf("admin URL %q: want https://host:port", baseURL)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	if len(caPEM) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caPEM) {
			return nil, errors.New("admin CA: no certificate found in PEM")
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &Client{base: u.Scheme + "://" + u.Host, token: token, http: &http.Client{Transport: tr, Timeout: 5 * time.Minute}}, nil
}

// APIError is an error answer of the admin API.
type APIError struct {
	Status  int
	Code    string
	Message string
	// Limit gives the numbers of a refusal by a limit (409, 507).
	Limit *capacity.LimitError
}

func (e *APIError) Error() string {
	return fmt.Sprintf("%s (HTTP %d %s)", e.Message, e.Status, e.Code)
}

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("admin API %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return fmt.Errorf("admin API: reading answer: %w", err)
	}
	if resp.StatusCode >= 300 {
		var eb ErrorBody
		if json.Unmarshal(data, &eb) == nil && eb.Error.Code != "" {
			return &APIError{Status: resp.StatusCode, Code: eb.Error.Code, Message: eb.Error.Message, Limit: eb.Error.Limit}
		}
		return &APIError{Status: resp.StatusCode, Code: "http", Message: http.StatusText(resp.StatusCode)}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("admin API: decoding answer: %w", err)
	}
	return nil
}

// AddCert installs a bundle; keyPEM may be empty when certPEM holds the key.
func (c *Client) AddCert(ctx context.Context, certPEM, keyPEM []byte) (CertResponse, error) {
	var out CertResponse
	err := c.do(ctx, http.MethodPost, "/v1/certs", certRequest{CertPEM: string(certPEM), KeyPEM: string(keyPEM)}, &out)
	return out, err
}

// AddCerts installs a batch; each bundle succeeds or fails on its own.
func (c *Client) AddCerts(ctx context.Context, items []BatchItem) ([]BatchResult, error) {
	var out struct {
		Results []BatchResult `json:"results"`
	}
	err := c.do(ctx, http.MethodPost, "/v1/certs/batch", map[string]any{"items": items}, &out)
	return out.Results, err
}

// ListCerts returns up to limit bundles with ids after the given one.
func (c *Client) ListCerts(ctx context.Context, after string, limit int) ([]certs.Info, error) {
	var out struct {
		Certs []certs.Info `json:"certs"`
	}
	q := url.Values{"limit": {strconv.Itoa(limit)}}
	if after != "" {
		q.Set("after", after)
	}
	err := c.do(ctx, http.MethodGet, "/v1/certs?"+q.Encode(), nil, &out)
	return out.Certs, err
}

// GetCert returns one bundle by id.
func (c *Client) GetCert(ctx context.Context, id string) (certs.Info, error) {
	var out certs.Info
	err := c.do(ctx, http.MethodGet, "/v1/certs/"+url.PathEscape(id), nil, &out)
	return out, err
}

// Lookup returns the bundles that would serve hostname.
func (c *Client) Lookup(ctx context.Context, hostname string) ([]certs.Info, error) {
	var out struct {
		Certs []certs.Info `json:"certs"`
	}
	err := c.do(ctx, http.MethodGet, "/v1/hosts/"+url.PathEscape(hostname), nil, &out)
	return out.Certs, err
}

// RemoveCert removes a bundle by id.
func (c *Client) RemoveCert(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/v1/certs/"+url.PathEscape(id), nil, nil)
}

// Pools returns the live state of the backend pools.
func (c *Client) Pools(ctx context.Context) ([]Pool, error) {
	var out struct {
		Pools []Pool `json:"pools"`
	}
	err := c.do(ctx, http.MethodGet, "/v1/pools", nil, &out)
	return out.Pools, err
}

// Reload asks the node to re-read its configuration.
func (c *Client) Reload(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/v1/reload", struct{}{}, nil)
}

// CloseIdleConnections closes the client's idle connections to the node.
func (c *Client) CloseIdleConnections() { c.http.CloseIdleConnections() }

// Upgrade asks the node to start the binary at its path and hand it the
// listeners; it returns once the new process serves, or the reason it does
// not (the old process then keeps serving).
func (c *Client) Upgrade(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/v1/upgrade", struct{}{}, nil)
}

// Limits returns every finite resource with its usage and limit.
func (c *Client) Limits(ctx context.Context) ([]capacity.Resource, error) {
	var out struct {
		Resources []capacity.Resource `json:"resources"`
	}
	err := c.do(ctx, http.MethodGet, "/v1/limits", nil, &out)
	return out.Resources, err
}

// Expiring returns bundles expired or expiring within the duration
// ("30d", "72h"), soonest first.
func (c *Client) Expiring(ctx context.Context, within string, limit int) ([]certs.Info, error) {
	var out struct {
		Certs []certs.Info `json:"certs"`
	}
	q := url.Values{"within": {within}, "limit": {strconv.Itoa(limit)}}
	err := c.do(ctx, http.MethodGet, "/v1/certs/expiring?"+q.Encode(), nil, &out)
	return out.Certs, err
}
