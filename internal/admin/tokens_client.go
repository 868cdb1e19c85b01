package admin

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// AddToken creates a named token with the given scopes; the answer holds
// its secret, shown this once.
func (c *Client) AddToken(ctx context.Context, name string, scopes []string) (TokenSecret, error) {
	var out TokenSecret
	err := c.do(ctx, http.MethodPost, "/v1/tokens", TokenRequest{Name: name, Scopes: scopes}, &out)
	return out, err
}

// ListTokens returns every named token (never a secret).
func (c *Client) ListTokens(ctx context.Context) ([]Token, error) {
	var out struct {
		Tokens []Token `json:"tokens"`
	}
	err := c.do(ctx, http.MethodGet, "/v1/tokens", nil, &out)
	return out.Tokens, err
}

// RotateToken gives a token a new secret; the old one stops working.
func (c *Client) RotateToken(ctx context.Context, name string) (TokenSecret, error) {
	var out TokenSecret
	err := c.do(ctx, http.MethodPost, "/v1/tokens/"+url.PathEscape(name)+"/rotate", nil, &out)
	return out, err
}

// RemoveToken revokes a token.
func (c *Client) RemoveToken(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/tokens/"+url.PathEscape(name), nil, nil)
}

// Audit returns the audit records of the last since (0: 24 hours) whose
// object starts with object, oldest first, and whether more were left.
func (c *Client) Audit(ctx context.Context, since time.Duration, object string, limit int) ([]AuditRecord, bool, error) {
	var out struct {
		Records []AuditRecord `json:"records"`
		More    bool          `json:"more"`
	}
	q := url.Values{}
	if since > 0 {
		q.Set("since", since.String())
	}
	if object != "" {
		q.Set("object", object)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	err := c.do(ctx, http.MethodGet, "/v1/audit?"+q.Encode(), nil, &out)
	return out.Records, out.More, err
}
