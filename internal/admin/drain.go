package admin

import (
	"context"
	"net/http"
	"time"

	"gatehouse/internal/drain"
	"gatehouse/internal/syntax"
)

// Drains is what the admin API needs of the drain manager.
type Drains interface {
	Drain(ctx context.Context, req drain.Request) ([]drain.Record, []drain.Capacity, error)
	Undrain(ctx context.Context, req drain.Request) ([]drain.Record, error)
	List() []drain.Record
	Progress() []drain.Progress
	Capacities() []drain.Capacity
}

// DrainRequest is the body of POST /v1/drain and /v1/undrain.
type DrainRequest struct {
	Pool   string `json:"pool,omitempty"`
	Zone   string `json:"zone,omitempty"`
	Member string `json:"member,omitempty"`
	Force  bool   `json:"force,omitempty"`
	// UpgradeGrace bounds WebSockets to drained members ("30s").
	UpgradeGrace string `json:"upgrade_grace,omitempty"`
	Reason       string `json:"reason,omitempty"`
}

// DrainResponse answers POST /v1/drain and /v1/undrain.
type DrainResponse struct {
	Members    []drain.Record   `json:"members"`
	Capacities []drain.Capacity `json:"capacities,omitempty"`
}

// DrainState answers GET /v1/drain: the fleet's drains, and this node's
// drained members with the work they still have.
type DrainState struct {
	Drains     []drain.Record   `json:"drains"`
	Progress   []drain.Progress `json:"progress"`
	Capacities []drain.Capacity `json:"capacities"`
}

func (s *Server) handleDrains() {
	d := s.opts.Drains
	s.handleFunc("GET /v1/drain", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, DrainState{Drains: d.List(), Progress: d.Progress(), Capacities: d.Capacities()})
	})
	s.handleFunc("POST /v1/drain", func(w http.ResponseWriter, r *http.Request) {
		req, ok := s.drainRequest(w, r)
		if !ok {
			return
		}
		recs, caps, err := d.Drain(r.Context(), req)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, DrainResponse{Members: recs, Capacities: caps})
	})
	s.handleFunc("POST /v1/undrain", func(w http.ResponseWriter, r *http.Request) {
		req, ok := s.drainRequest(w, r)
		if !ok {
			return
		}
		recs, err := d.Undrain(r.Context(), req)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, DrainResponse{Members: recs})
	})
}

func (s *Server) drainRequest(w http.ResponseWriter, r *http.Request) (drain.Request, bool) {
	var in DrainRequest
	if !s.readJSON(w, r, 16<<10, &in) {
		return drain.Request{}, false
	}
	req := drain.Request{Pool: in.Pool, Zone: in.Zone, Member: in.Member, Force: in.Force, Reason: in.Reason}
	if req.Reason == "" {
		req.Reason = "admin API"
	}
	if in.UpgradeGrace != "" {
		g, err := syntax.Duration(in.UpgradeGrace)
		if err != nil || g < 0 || g > 24*time.Hour {
			writeError(w, http.StatusBadRequest, "invalid_input", "upgrade_grace: "+in.UpgradeGrace+" is not a duration between 0 and 24h")
			return drain.Request{}, false
		}
		req.UpgradeGrace = g
	}
	return req, true
}

// Drain drains the members req selects.
func (c *Client) Drain(ctx context.Context, req DrainRequest) (DrainResponse, error) {
	var out DrainResponse
	err := c.do(ctx, http.MethodPost, "/v1/drain", req, &out)
	return out, err
}

// Undrain undrains the members req selects.
func (c *Client) Undrain(ctx context.Context, req DrainRequest) (DrainResponse, error) {
	var out DrainResponse
	err := c.do(ctx, http.MethodPost, "/v1/undrain", req, &out)
	return out, err
}

// DrainState returns the drains and this node's drain progress.
func (c *Client) DrainState(ctx context.Context) (DrainState, error) {
	var out DrainState
	err := c.do(ctx, http.MethodGet, "/v1/drain", nil, &out)
	return out, err
}
