// Package admin is Gatehouse's admin API: JSON over HTTPS on its own
// listener, every request authenticated with a bearer token. The same
// package holds the Go client that the CLI uses.
package admin

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"gatehouse/internal/capacity"
	"gatehouse/internal/certs"
	"gatehouse/internal/fault"
	"gatehouse/internal/syntax"
)

// Request body limits.
const (
	maxCertBody  = 1 << 20  // one bundle
	maxBatchBody = 64 << 20 // a batch of bundles
	maxBatchSize = 1000     // bundles per batch request
)

// Certs is what the admin API needs of the certificate manager.
type Certs interface {
	Add(ctx context.Context, certPEM, keyPEM []byte) (certs.Info, []string, error)
	AddBatch(ctx context.Context, items []certs.Item) []certs.Result
	Remove(ctx context.Context, id string) error
	List(ctx context.Context, after string, limit int) ([]certs.Info, error)
	Get(ctx context.Context, id string) (certs.Info, error)
	Lookup(hostname string) []certs.Info
	Expiring(ctx context.Context, within time.Duration, limit int) ([]certs.Info, error)
}

// Options configures a Server. Every hook is optional: a nil hook's
// endpoint answers 404.
type Options struct {
	Logger *slog.Logger
	// Token is the bearer token every request must carry.
	Token string
	Certs Certs
	// Routes manages the dynamic routes (routes.go).
	Routes Routes
	// Hostnames manages the customer hostnames (hostnames.go).
	Hostnames Hostnames
	// CertSource tells ACME-managed certificates ("acme") from uploaded
	// ones ("uploaded") in certificate answers (nil: not told).
	CertSource func(id string) string
	// Pools returns the live state of the backend pools.
	Pools func() []Pool
	// Reload re-reads the static configuration and swaps it in.
	Reload func(ctx context.Context) error
	// Upgrade starts the binary at the node's path and hands it the
	// listeners; it returns once the new process is ready (this one then
	// drains and exits) or with the reason it is not.
	Upgrade func(ctx context.Context) error
	// Limits returns every finite resource with usage and limit.
	Limits func() []capacity.Resource
	// Metrics serves Prometheus metrics at /metrics (token required too).
	Metrics http.Handler
	// Status serves the status portal's management API under /v1/status/
	// (incidents, maintenance, component overrides); the token is checked
	// before it is called.
	Status http.Handler
	// Drains drains and undrains pool members (drain.go).
	Drains Drains
	// Tokens holds the named tokens with their scopes (tokens.go); nil:
	// only the bootstrap Token is accepted.
	Tokens *Tokens
	// Audit records every change made through the API (audit.go); nil:
	// none is recorded.
	Audit *Audit
}

// Server is the admin API's http.Handler.
type Server struct {
	log   *slog.Logger
	token []byte
	// identity names the token in logs without revealing it.
	identity string
	opts     Options
	mux      *http.ServeMux
	// scopes tells the scope each request needs (scopes.go).
	scopes *scopeTable
}

// NewServer returns the admin API handler. It refuses to build without a token.
func NewServer(opts Options) (*Server, error) {
	if len(opts.Token) < 16 {
		return nil, errors.New("admin: a bearer token of at least 16 characters is required")
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	sum := sha256.Sum256([]byte(opts.Token))
	s := &Server{log: log.With("component", "admin"), token: []byte(opts.Token), identity: "admin token sha256:" + hex.EncodeToString(sum[:4]), opts: opts, mux: http.NewServeMux(), scopes: newScopeTable()}
	s.handleFunc("GET /v1/health", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	if opts.Certs != nil {
		s.handleFunc("GET /v1/certs", s.listCerts)
		s.handleFunc("POST /v1/certs", s.addCert)
		s.handleFunc("POST /v1/certs/batch", s.addCerts)
		s.handleFunc("GET /v1/certs/expiring", s.expiring)
		s.handleFunc("GET /v1/certs/{id}", s.getCert)
		s.handleFunc("DELETE /v1/certs/{id}", s.removeCert)
		s.handleFunc("GET /v1/hosts/{hostname}", s.lookup)
	}
	if opts.Routes != nil {
		s.handleRoutes()
	}
	if opts.Drains != nil {
		s.handleDrains()
	}
	if opts.Hostnames != nil {
		s.handleHostnames()
	}
	if opts.Pools != nil {
		s.handleFunc("GET /v1/pools", func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, map[string]any{"pools": opts.Pools()})
		})
	}
	if opts.Limits != nil {
		s.handleFunc("GET /v1/limits", func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, map[string]any{"resources": opts.Limits()})
		})
	}
	if opts.Metrics != nil {
		s.handle("GET /metrics", opts.Metrics)
	}
	if opts.Status != nil {
		for _, m := range []string{"GET", "POST", "PUT", "DELETE"} {
			s.handle(m+" /v1/status/", opts.Status)
		}
	}
	if opts.Reload != nil {
		s.handleFunc("POST /v1/reload", func(w http.ResponseWriter, r *http.Request) {
			if err := opts.Reload(r.Context()); err != nil {
				// A refused config is the operator's input: say exactly why.
				writeError(w, http.StatusBadRequest, "invalid_config", err.Error())
				return
			}
			writeJSON(w, http.StatusOK, map[string]string{"status": "reloaded"})
		})
	}
	if opts.Tokens != nil {
		s.handleTokens()
	}
	if opts.Audit != nil {
		s.handleAudit()
	}
	if opts.Upgrade != nil {
		s.handleFunc("POST /v1/upgrade", func(w http.ResponseWriter, r *http.Request) {
			if err := opts.Upgrade(r.Context()); err != nil {
				// This process keeps serving; say why the new one did not.
				writeError(w, http.StatusConflict, "upgrade_failed", err.Error())
				return
			}
			writeJSON(w, http.StatusOK, map[string]string{"status": "upgraded"})
		})
	}
	return s, nil
}

// ServeHTTP authenticates the request and dispatches it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	w.Header().Set("Cache-Control", "no-store")
	auth := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	identity, scopes, err := s.authenticate(r.Context(), tok, ok)
	if err != nil && !errors.Is(err, errBadToken) {
		s.fail(w, r, err)
		return
	}
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="gatehouse-admin"`)
		writeError(w, http.StatusUnauthorized, "unauthorized", "a valid bearer token is required")
		s.log.Warn("admin request refused", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr, "reason", authReason(auth, ok))
		return
	}
	need, pattern := s.scopes.need(r)
	if !grants(scopes, need) {
		forbidden(w, need, identity, scopes)
		s.log.Warn("admin request refused", "method", r.Method, "path", r.URL.Path, "pattern", pattern, "remote", r.RemoteAddr, "identity", identity, "reason", "missing scope "+string(need))
		return
	}
	// Who asked, for the log line of a refused change (capacity.Admit).
	id := r.Header.Get("X-Request-Id")
	if !saneRequestID(id) {
		id = newRequestID()
	}
	w.Header().Set("X-Request-Id", id)
	r = r.WithContext(capacity.WithCaller(r.Context(), capacity.Caller{Remote: r.RemoteAddr, Identity: identity, RequestID: id}))
	if s.opts.Audit != nil && r.Method != http.MethodGet && r.Method != http.MethodHead {
		s.audited(w, r, pattern)
	} else {
		s.mux.ServeHTTP(w, r)
	}
	s.log.Debug("admin request", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr, "request_id", id, "duration", time.Since(start))
}

// authenticate returns who presented tok (the bootstrap token, or a named
// token of the store) and its scopes; errBadToken when it is neither.
func (s *Server) authenticate(ctx context.Context, tok string, bearer bool) (string, []Scope, error) {
	if !bearer || tok == "" {
		return "", nil, errBadToken
	}
	if subtle.ConstantTimeCompare([]byte(tok), s.token) == 1 {
		return s.identity, []Scope{ScopeAdmin}, nil
	}
	if s.opts.Tokens == nil {
		return "", nil, errBadToken
	}
	t, err := s.opts.Tokens.Authenticate(ctx, tok)
	if err != nil {
		return "", nil, err
	}
	return "token " + strconv.Quote(t.Name), t.Scopes, nil
}

// newRequestID returns a random request id for an admin request that
// brought none.
func newRequestID() string {
	var b [8]byte
	rand.Read(b[:]) // never fails (crypto/rand.Read panics instead)
	return "admin-" + hex.EncodeToString(b[:])
}

// saneRequestID reports whether an incoming request id is kept: 1 to 128
// bytes of letters, digits and -_.:+/=@.
func saneRequestID(id string) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("-_.:+/=@", c) >= 0:
		default:
			return false
		}
	}
	return true
}

func authReason(header string, bearer bool) string {
	switch {
	case header == "":
		return "no Authorization header"
	case !bearer:
		return "not a bearer token"
	}
	return "wrong token"
}

// certRequest is the body of POST /v1/certs: PEM text, the key either in
// key_pem or inside cert_pem.
type certRequest struct {
	CertPEM string `json:"cert_pem"`
	KeyPEM  string `json:"key_pem,omitempty"`
}

// CertResponse is the answer to an added certificate.
type CertResponse struct {
	Cert     certs.Info `json:"cert"`
	Warnings []string   `json:"warnings,omitempty"`
}

// BatchItem is one bundle of a batch, named by its source (a file path).
type BatchItem struct {
	Source  string `json:"source"`
	CertPEM string `json:"cert_pem"`
	KeyPEM  string `json:"key_pem,omitempty"`
}

// BatchResult is the outcome of one bundle of a batch.
type BatchResult struct {
	Source   string      `json:"source"`
	Cert     *certs.Info `json:"cert,omitempty"`
	Warnings []string    `json:"warnings,omitempty"`
	Error    string      `json:"error,omitempty"`
	// Limit gives the numbers when a limit refused the bundle.
	Limit *capacity.LimitError `json:"limit,omitempty"`
}

func (s *Server) addCert(w http.ResponseWriter, r *http.Request) {
	var req certRequest
	if !s.readJSON(w, r, maxCertBody, &req) {
		return
	}
	if req.CertPEM == "" {
		writeError(w, http.StatusBadRequest, "invalid_input", "cert_pem: is required")
		return
	}
	info, warnings, err := s.opts.Certs.Add(r.Context(), []byte(req.CertPEM), []byte(req.KeyPEM))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("certificate added", "id", info.ID, "names", info.Names, "warnings", len(warnings))
	writeJSON(w, http.StatusCreated, CertResponse{Cert: info, Warnings: warnings})
}

func (s *Server) addCerts(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Items []BatchItem `json:"items"`
	}
	if !s.readJSON(w, r, maxBatchBody, &req) {
		return
	}
	if len(req.Items) > maxBatchSize {
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", "items: "+strconv.Itoa(len(req.Items))+" bundles exceed the batch limit of "+strconv.Itoa(maxBatchSize))
		return
	}
	items := make([]certs.Item, len(req.Items))
	for i, it := range req.Items {
		items[i] = certs.Item{Source: it.Source, CertPEM: []byte(it.CertPEM), KeyPEM: []byte(it.KeyPEM)}
	}
	results := s.opts.Certs.AddBatch(r.Context(), items)
	out := make([]BatchResult, len(results))
	added := 0
	for i, res := range results {
		out[i] = BatchResult{Source: req.Items[i].Source, Warnings: res.Warnings}
		if res.Err != nil {
			out[i].Error = fault.Public(res.Err)
			var le *capacity.LimitError
			if errors.As(res.Err, &le) {
				out[i].Limit = le
			}
			continue
		}
		info := res.Info
		out[i].Cert = &info
		added++
	}
	s.log.Info("certificate batch", "items", len(items), "added", added)
	writeJSON(w, http.StatusOK, map[string]any{"results": out})
}

func (s *Server) listCerts(w http.ResponseWriter, r *http.Request) {
	limit, ok := queryLimit(w, r, 100, 10000)
	if !ok {
		return
	}
	list, err := s.opts.Certs.List(r.Context(), r.URL.Query().Get("after"), limit)
	s.writeCerts(w, r, list, err)
}

// queryLimit reads the "limit" query parameter (def when absent); on a bad
// value it answers 400 and returns false.
func queryLimit(w http.ResponseWriter, r *http.Request, def, max int) (int, bool) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return def, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > max {
		writeError(w, http.StatusBadRequest, "invalid_input", "limit: must be a number from 1 to "+strconv.Itoa(max))
		return 0, false
	}
	return n, true
}

// writeCerts answers with a list of bundles, or the error.
func (s *Server) writeCerts(w http.ResponseWriter, r *http.Request, list []certs.Info, err error) {
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if list == nil {
		list = []certs.Info{}
	}
	if s.opts.CertSource != nil {
		for i := range list {
			list[i].Source = s.opts.CertSource(list[i].ID)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"certs": list})
}

func (s *Server) expiring(w http.ResponseWriter, r *http.Request) {
	within := 30 * 24 * time.Hour
	if v := r.URL.Query().Get("within"); v != "" {
		d, err := syntax.Duration(v)
		if err != nil {
			writeError(w, http.StatusBadRequest, "invalid_input", "within: "+err.Error())
			return
		}
		within = d
	}
	limit, ok := queryLimit(w, r, 1000, 100000)
	if !ok {
		return
	}
	list, err := s.opts.Certs.Expiring(r.Context(), within, limit)
	s.writeCerts(w, r, list, err)
}

func (s *Server) getCert(w http.ResponseWriter, r *http.Request) {
	info, err := s.opts.Certs.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if s.opts.CertSource != nil {
		info.Source = s.opts.CertSource(info.ID)
	}
	writeJSON(w, http.StatusOK, info)
}

func (s *Server) removeCert(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := s.opts.Certs.Remove(r.Context(), id); err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("certificate removed", "id", id)
	writeJSON(w, http.StatusOK, map[string]string{"removed": id})
}

func (s *Server) lookup(w http.ResponseWriter, r *http.Request) {
	host := strings.ToLower(r.PathValue("hostname"))
	list := s.opts.Certs.Lookup(host)
	if list == nil {
		list = []certs.Info{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"hostname": host, "certs": list})
}

func (s *Server) readJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) bool {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		writeError(w, http.StatusUnsupportedMediaType, "invalid_input", "Content-Type must be application/json")
		return false
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, "too_large", "request body exceeds "+strconv.FormatInt(limit, 10)+" bytes")
			return false
		}
		writeError(w, http.StatusBadRequest, "invalid_input", "request body: "+err.Error())
		return false
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		writeError(w, http.StatusBadRequest, "invalid_input", "request body: more than one JSON value")
		return false
	}
	return true
}

// fail answers an error through the one mapper of error kinds
// (internal/fault): the status, a code, a message that is safe to show,
// the field of invalid input and the numbers of a limit.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	status, code := fault.HTTP(err)
	// Quota refusals are logged where they are decided; a full disk is not.
	if status >= 500 && (status != http.StatusInsufficientStorage || code == "disk_full") {
		s.log.Error("admin request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	var b ErrorBody
	b.Error.Code, b.Error.Message = code, fault.Public(err)
	if status == http.StatusBadRequest {
		b.Error.Field = fault.Field(err)
	}
	var le *capacity.LimitError
	if errors.As(err, &le) {
		b.Error.Limit = le
	}
	writeJSON(w, status, b)
}

func classify(err error) (int, string) { return fault.HTTP(err) }

// ErrorBody is the JSON body of every error answer.
type ErrorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		// Field is the input field a 400 answer is about, when it names one.
		Field string `json:"field,omitempty"`
		// Limit gives the numbers of a refusal by a limit.
		Limit *capacity.LimitError `json:"limit,omitempty"`
		// Scope names the scope a refused request (403) lacks.
		Scope string `json:"scope,omitempty"`
	} `json:"error"`
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	var b ErrorBody
	b.Error.Code, b.Error.Message = code, msg
	writeJSON(w, status, b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
