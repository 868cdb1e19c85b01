package admin

import (
	"context"
	"net/http"
	"net/url"

	"gatehouse/internal/hostnames"
)

// AddHostname registers a customer hostname and its route.
func (c *Client) AddHostname(ctx context.Context, req HostnameRequest) (hostnames.Hostname, error) {
	var out hostnames.Hostname
	err := c.do(ctx, http.MethodPost, "/v1/hostnames", req, &out)
	return out, err
}

// ListHostnames returns the hostnames, in one state unless state is "".
func (c *Client) ListHostnames(ctx context.Context, state string) ([]hostnames.Hostname, error) {
	var out struct {
		Hostnames []hostnames.Hostname `json:"hostnames"`
	}
	path := "/v1/hostnames"
	if state != "" {
		path += "?state=" + url.QueryEscape(state)
	}
	err := c.do(ctx, http.MethodGet, path, nil, &out)
	return out.Hostnames, err
}

// GetHostname returns one hostname.
func (c *Client) GetHostname(ctx context.Context, name string) (hostnames.Hostname, error) {
	var out hostnames.Hostname
	err := c.do(ctx, http.MethodGet, "/v1/hostnames/"+url.PathEscape(name), nil, &out)
	return out, err
}

// RemoveHostname removes a hostname, its route and its ACME certificate.
func (c *Client) RemoveHostname(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/hostnames/"+url.PathEscape(name), nil, nil)
}

// RetryHostname makes a hostname's next order due at once.
func (c *Client) RetryHostname(ctx context.Context, name string) (hostnames.Hostname, error) {
	var out hostnames.Hostname
	err := c.do(ctx, http.MethodPost, "/v1/hostnames/"+url.PathEscape(name)+"/retry", nil, &out)
	return out, err
}
