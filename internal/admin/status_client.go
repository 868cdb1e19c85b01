package admin

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"gatehouse/internal/status"
)

// The status portal's management API (under /v1/status/).

// StatusComponents returns every status component with its state.
func (c *Client) StatusComponents(ctx context.Context) ([]status.ComponentState, error) {
	var out struct {
		Components []status.ComponentState `json:"components"`
	}
	err := c.do(ctx, http.MethodGet, "/v1/status/components", nil, &out)
	return out.Components, err
}

// SetComponent overrides a component's state until ClearComponent; ref is
// an id, "Region/Name" or a unique name.
func (c *Client) SetComponent(ctx context.Context, ref, state, reason string) (status.Override, error) {
	var out status.Override
	err := c.do(ctx, http.MethodPut, "/v1/status/components/"+url.PathEscape(ref)+"/override",
		status.OverrideRequest{Status: state, Reason: reason}, &out)
	return out, err
}

// ClearComponent returns a component to its health-driven state.
func (c *Client) ClearComponent(ctx context.Context, ref string) error {
	return c.do(ctx, http.MethodDelete, "/v1/status/components/"+url.PathEscape(ref)+"/override", nil, nil)
}

// OpenIncident opens an incident.
func (c *Client) OpenIncident(ctx context.Context, req status.IncidentRequest) (status.Incident, error) {
	var out status.Incident
	err := c.do(ctx, http.MethodPost, "/v1/status/incidents", req, &out)
	return out, err
}

// UpdateIncident adds an update to an incident (status resolved resolves it).
func (c *Client) UpdateIncident(ctx context.Context, id string, req status.UpdateRequest) (status.Incident, error) {
	var out status.Incident
	err := c.do(ctx, http.MethodPost, "/v1/status/incidents/"+url.PathEscape(id)+"/updates", req, &out)
	return out, err
}

// Incidents lists every incident, drafts included, newest first.
func (c *Client) Incidents(ctx context.Context) ([]status.Incident, error) {
	var out struct {
		Incidents []status.Incident `json:"incidents"`
	}
	err := c.do(ctx, http.MethodGet, "/v1/status/incidents", nil, &out)
	return out.Incidents, err
}

// Postmortem returns an incident's published report or, if none, a
// skeleton prefilled with its timeline.
func (c *Client) Postmortem(ctx context.Context, id string) (string, error) {
	var out struct {
		Markdown string `json:"markdown"`
	}
	err := c.do(ctx, http.MethodGet, "/v1/status/incidents/"+url.PathEscape(id)+"/postmortem", nil, &out)
	return out.Markdown, err
}

// PublishPostmortem publishes the report of a resolved incident.
func (c *Client) PublishPostmortem(ctx context.Context, id, markdown string) (status.Incident, error) {
	var out status.Incident
	err := c.do(ctx, http.MethodPut, "/v1/status/incidents/"+url.PathEscape(id)+"/postmortem",
		map[string]string{"markdown": markdown}, &out)
	return out, err
}

// ScheduleMaintenance schedules a maintenance window.
func (c *Client) ScheduleMaintenance(ctx context.Context, req status.MaintenanceRequest) (status.MaintenanceWindow, error) {
	var out status.MaintenanceWindow
	err := c.do(ctx, http.MethodPost, "/v1/status/maintenances", req, &out)
	return out, err
}

// Maintenances lists every maintenance.
func (c *Client) Maintenances(ctx context.Context) ([]status.MaintenanceWindow, error) {
	var out struct {
		Maintenances []status.MaintenanceWindow `json:"maintenances"`
	}
	err := c.do(ctx, http.MethodGet, "/v1/status/maintenances", nil, &out)
	return out.Maintenances, err
}

// AdvanceMaintenance starts, verifies or completes a maintenance; action
// is "start", "verify" or "complete".
func (c *Client) AdvanceMaintenance(ctx context.Context, id, action, body string) (status.MaintenanceWindow, error) {
	var out status.MaintenanceWindow
	err := c.do(ctx, http.MethodPost, "/v1/status/maintenances/"+url.PathEscape(id)+"/"+url.PathEscape(action),
		map[string]string{"body": body}, &out)
	return out, err
}

// AddStatusWebhook subscribes an endpoint to component and incident
// updates. The answer carries the signing secret (generated when req has
// none); it is not shown again.
func (c *Client) AddStatusWebhook(ctx context.Context, req status.SubscriberRequest) (status.Subscriber, error) {
	var out status.Subscriber
	err := c.do(ctx, http.MethodPost, "/v1/status/webhooks", req, &out)
	return out, err
}

// StatusWebhooks lists the webhook subscribers, without their secrets.
func (c *Client) StatusWebhooks(ctx context.Context) ([]status.Subscriber, error) {
	var out struct {
		Subscribers []status.Subscriber `json:"subscribers"`
	}
	err := c.do(ctx, http.MethodGet, "/v1/status/webhooks", nil, &out)
	return out.Subscribers, err
}

// RemoveStatusWebhook unsubscribes a webhook endpoint.
func (c *Client) RemoveStatusWebhook(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/v1/status/webhooks/"+url.PathEscape(id), nil, nil)
}

// StatusDeliveries returns the webhook delivery log, oldest first, of one
// subscriber or of all ("").
func (c *Client) StatusDeliveries(ctx context.Context, subscriber string) ([]status.Delivery, error) {
	var out struct {
		Deliveries []status.Delivery `json:"deliveries"`
	}
	path := "/v1/status/webhooks/deliveries"
	if subscriber != "" {
		path += "?subscriber=" + url.QueryEscape(subscriber)
	}
	err := c.do(ctx, http.MethodGet, path, nil, &out)
	return out.Deliveries, err
}

// StatusSite returns the rendered status site. With after > 0 it waits up
// to wait for a rendering newer than after (long poll).
func (c *Client) StatusSite(ctx context.Context, after uint64, wait time.Duration) (status.SiteExport, error) {
	var out status.SiteExport
	path := "/v1/status/site"
	if after > 0 {
		path += "?after=" + strconv.FormatUint(after, 10) + "&wait=" + wait.String()
	}
	err := c.do(ctx, http.MethodGet, path, nil, &out)
	return out, err
}
