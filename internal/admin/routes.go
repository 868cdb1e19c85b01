package admin

import (
	"context"
	"net/http"

	"gatehouse/internal/routes"
)

// maxRouteBody bounds the body of a route request.
const maxRouteBody = 16 << 10

// Routes is what the admin API needs of the dynamic route manager.
type Routes interface {
	Add(ctx context.Context, r routes.Route) (routes.Route, error)
	Replace(ctx context.Context, r routes.Route) (routes.Route, error)
	Update(ctx context.Context, id string, u routes.Update) (routes.Route, error)
	Remove(ctx context.Context, id string) error
	Get(ctx context.Context, id string) (routes.Route, error)
	List(ctx context.Context) ([]routes.Route, error)
}

// RouteRequest is the body of POST /v1/routes. With Replace, a route of
// the same host and path prefix is replaced instead of refused.
type RouteRequest struct {
	Host       string `json:"host"`
	PathPrefix string `json:"path_prefix,omitempty"`
	Pool       string `json:"pool"`
	Tenant     string `json:"tenant,omitempty"`
	Replace    bool   `json:"replace,omitempty"`
}

// handleRoutes registers the dynamic route endpoints.
func (s *Server) handleRoutes() {
	s.handleFunc("GET /v1/routes", s.listRoutes)
	s.handleFunc("POST /v1/routes", s.addRoute)
	s.handleFunc("GET /v1/routes/{id}", s.getRoute)
	s.handleFunc("PUT /v1/routes/{id}", s.updateRoute)
	s.handleFunc("DELETE /v1/routes/{id}", s.removeRoute)
}

func (s *Server) listRoutes(w http.ResponseWriter, r *http.Request) {
	list, err := s.opts.Routes.List(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if list == nil {
		list = []routes.Route{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"routes": list})
}

func (s *Server) addRoute(w http.ResponseWriter, r *http.Request) {
	var req RouteRequest
	if !s.readJSON(w, r, maxRouteBody, &req) {
		return
	}
	in := routes.Route{Host: req.Host, PathPrefix: req.PathPrefix, Pool: req.Pool, Tenant: req.Tenant}
	add, status := s.opts.Routes.Add, http.StatusCreated
	if req.Replace {
		add, status = s.opts.Routes.Replace, http.StatusOK
	}
	rt, err := add(r.Context(), in)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("route stored", "id", rt.ID, "host", rt.Host, "path_prefix", rt.PathPrefix, "pool", rt.Pool, "replace", req.Replace)
	writeJSON(w, status, rt)
}

func (s *Server) getRoute(w http.ResponseWriter, r *http.Request) {
	rt, err := s.opts.Routes.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rt)
}

func (s *Server) updateRoute(w http.ResponseWriter, r *http.Request) {
	var u routes.Update
	if !s.readJSON(w, r, maxRouteBody, &u) {
		return
	}
	if u.Pool == nil && u.Tenant == nil {
		writeError(w, http.StatusBadRequest, "invalid_input", "request body: give pool or tenant (host and path_prefix name the route: add a new one and remove this one to change them)")
		return
	}
	rt, err := s.opts.Routes.Update(r.Context(), r.PathValue("id"), u)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("route updated", "id", rt.ID, "pool", rt.Pool)
	writeJSON(w, http.StatusOK, rt)
}

func (s *Server) removeRoute(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := s.opts.Routes.Remove(r.Context(), id); err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("route removed", "id", id)
	writeJSON(w, http.StatusOK, map[string]string{"removed": id})
}
