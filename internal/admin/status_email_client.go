package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"gatehouse/internal/status"
)

// AddEmailSubscriber adds (or replaces) an email subscriber, confirmed by
// the operator.
func (c *Client) AddEmailSubscriber(ctx context.Context, req status.EmailSubscriberRequest) (status.EmailSubscriber, error) {
	var out status.EmailSubscriber
	err := c.do(ctx, http.MethodPost, "/v1/status/email/subscribers", req, &out)
	return out, err
}

// RemoveEmailSubscriber removes the email subscriber of addr.
func (c *Client) RemoveEmailSubscriber(ctx context.Context, addr string) error {
	return c.do(ctx, http.MethodDelete, "/v1/status/email/subscribers/"+url.PathEscape(addr), nil, nil)
}

// EmailSubscribers calls f for each email subscriber (only the one of
// addr if not empty), reading the streamed list as it arrives.
func (c *Client) EmailSubscribers(ctx context.Context, addr string, f func(status.EmailSubscriber) error) error {
	path := "/v1/status/email/subscribers"
	if addr != "" {
		path += "?email=" + url.QueryEscape(addr)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("admin API %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		var eb ErrorBody
		if json.Unmarshal(data, &eb) == nil && eb.Error.Code != "" {
			return &APIError{Status: resp.StatusCode, Code: eb.Error.Code, Message: eb.Error.Message}
		}
		return &APIError{Status: resp.StatusCode, Code: "http", Message: http.StatusText(resp.StatusCode)}
	}
	dec := json.NewDecoder(resp.Body)
	for {
		var s status.EmailSubscriber
		if err := dec.Decode(&s); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("admin API: decoding subscribers: %w", err)
		}
		if err := f(s); err != nil {
			return err
		}
	}
}

// RecordEmailBounce records a bounce that arrived after the mail server
// accepted a message: for req.Email, or for the permanently failed
// recipients of the delivery status notification req.DSN.
func (c *Client) RecordEmailBounce(ctx context.Context, req status.BounceRequest) (status.BounceResult, error) {
	var out status.BounceResult
	err := c.do(ctx, http.MethodPost, "/v1/status/email/bounces", req, &out)
	return out, err
}
