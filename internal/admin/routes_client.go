package admin

import (
	"context"
	"net/http"
	"net/url"

	"gatehouse/internal/routes"
)

// AddRoute stores a dynamic route; with req.Replace it replaces the route
// of the same host and path prefix instead of being refused.
func (c *Client) AddRoute(ctx context.Context, req RouteRequest) (routes.Route, error) {
	var out routes.Route
	err := c.do(ctx, http.MethodPost, "/v1/routes", req, &out)
	return out, err
}

// ListRoutes returns every dynamic route, sorted by host then path prefix.
func (c *Client) ListRoutes(ctx context.Context) ([]routes.Route, error) {
	var out struct {
		Routes []routes.Route `json:"routes"`
	}
	err := c.do(ctx, http.MethodGet, "/v1/routes", nil, &out)
	return out.Routes, err
}

// GetRoute returns one dynamic route by id.
func (c *Client) GetRoute(ctx context.Context, id string) (routes.Route, error) {
	var out routes.Route
	err := c.do(ctx, http.MethodGet, "/v1/routes/"+url.PathEscape(id), nil, &out)
	return out, err
}

// UpdateRoute changes the pool or tenant of a dynamic route.
func (c *Client) UpdateRoute(ctx context.Context, id string, u routes.Update) (routes.Route, error) {
	var out routes.Route
	err := c.do(ctx, http.MethodPut, "/v1/routes/"+url.PathEscape(id), u, &out)
	return out, err
}

// RemoveRoute removes a dynamic route by id.
func (c *Client) RemoveRoute(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/v1/routes/"+url.PathEscape(id), nil, nil)
}
