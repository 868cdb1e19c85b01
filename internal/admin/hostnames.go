package admin

import (
	"context"
	"net/http"
	"strconv"

	"gatehouse/internal/hostnames"
)

// maxHostnameBody bounds the body of a hostname request.
const maxHostnameBody = 16 << 10

// Hostnames is what the admin API needs of the customer hostnames.
type Hostnames interface {
	Add(ctx context.Context, h hostnames.Hostname) (hostnames.Hostname, error)
	Get(ctx context.Context, name string) (hostnames.Hostname, error)
	List(ctx context.Context, state hostnames.State, after string, limit int) ([]hostnames.Hostname, error)
	Remove(ctx context.Context, name string) error
	Retry(ctx context.Context, name string) (hostnames.Hostname, error)
}

// HostnameRequest is the body of POST /v1/hostnames.
type HostnameRequest struct {
	Name   string `json:"name"`
	Tenant string `json:"tenant,omitempty"`
	Pool   string `json:"pool"`
	// Source is "acme" (the default: the edge obtains the certificate) or
	// "uploaded" (the operator adds it with gatehouse cert add).
	Source string `json:"source,omitempty"`
}

// handleHostnames registers the hostname endpoints.
func (s *Server) handleHostnames() {
	s.handleFunc("GET /v1/hostnames", s.listHostnames)
	s.handleFunc("POST /v1/hostnames", s.addHostname)
	s.handleFunc("GET /v1/hostnames/{name}", s.getHostname)
	s.handleFunc("DELETE /v1/hostnames/{name}", s.removeHostname)
	s.handleFunc("POST /v1/hostnames/{name}/retry", s.retryHostname)
}

func (s *Server) listHostnames(w http.ResponseWriter, r *http.Request) {
	limit := 0
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100000 {
			writeError(w, http.StatusBadRequest, "invalid_input", "limit: must be a number from 1 to 100000")
			return
		}
		limit = n
	}
	q := r.URL.Query()
	list, err := s.opts.Hostnames.List(r.Context(), hostnames.State(q.Get("state")), q.Get("after"), limit)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if list == nil {
		list = []hostnames.Hostname{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"hostnames": list})
}

func (s *Server) addHostname(w http.ResponseWriter, r *http.Request) {
	var req HostnameRequest
	if !s.readJSON(w, r, maxHostnameBody, &req) {
		return
	}
	h, err := s.opts.Hostnames.Add(r.Context(), hostnames.Hostname{Name: req.Name, Tenant: req.Tenant, Pool: req.Pool, Source: req.Source})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, h)
}

func (s *Server) getHostname(w http.ResponseWriter, r *http.Request) {
	h, err := s.opts.Hostnames.Get(r.Context(), r.PathValue("name"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, h)
}

func (s *Server) removeHostname(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := s.opts.Hostnames.Remove(r.Context(), name); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"removed": hostnames.Normalize(name)})
}

func (s *Server) retryHostname(w http.ResponseWriter, r *http.Request) {
	h, err := s.opts.Hostnames.Retry(r.Context(), r.PathValue("name"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("hostname retry requested", "name", h.Name, "state", h.State)
	writeJSON(w, http.StatusOK, h)
}
