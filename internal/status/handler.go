package status

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"gatehouse/internal/fault"
)

// maxRequestBody bounds management request bodies (a report plus JSON).
const maxRequestBody = MaxPostmortemBytes + 64<<10

// SiteExport is the answer of GET /v1/status/site: the rendered site.
type SiteExport struct {
	Revision uint64            `json:"revision"`
	Files    map[string]string `json:"files"`
}

// ManagementHandler serves the management API under /v1/status/. It does
// no authentication: mount it behind the admin API's token check.
func (p *Portal) ManagementHandler() http.Handler {
	mux := http.NewServeMux()
	p.emailRoutes(mux) // emailapi.go
	mux.HandleFunc("GET /v1/status/components", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"components": p.Components()})
	})
	mux.HandleFunc("PUT /v1/status/components/{ref}/override", func(w http.ResponseWriter, r *http.Request) {
		var req OverrideRequest
		if !readJSON(w, r, &req) {
			return
		}
		o, err := p.SetOverride(r.Context(), r.PathValue("ref"), req)
		p.reply(w, http.StatusOK, o, err)
	})
	mux.HandleFunc("DELETE /v1/status/components/{ref}/override", func(w http.ResponseWriter, r *http.Request) {
		err := p.ClearOverride(r.Context(), r.PathValue("ref"))
		p.reply(w, http.StatusOK, map[string]string{"cleared": r.PathValue("ref")}, err)
	})
	mux.HandleFunc("GET /v1/status/incidents", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"incidents": p.Incidents()})
	})
	mux.HandleFunc("POST /v1/status/incidents", func(w http.ResponseWriter, r *http.Request) {
		var req IncidentRequest
		if !readJSON(w, r, &req) {
			return
		}
		in, err := p.OpenIncident(r.Context(), req)
		p.reply(w, http.StatusCreated, in, err)
	})
	mux.HandleFunc("GET /v1/status/incidents/{id}", func(w http.ResponseWriter, r *http.Request) {
		in, err := p.Incident(r.PathValue("id"))
		p.reply(w, http.StatusOK, in, err)
	})
	mux.HandleFunc("POST /v1/status/incidents/{id}/updates", func(w http.ResponseWriter, r *http.Request) {
		var req UpdateRequest
		if !readJSON(w, r, &req) {
			return
		}
		in, err := p.UpdateIncident(r.Context(), r.PathValue("id"), req)
		p.reply(w, http.StatusOK, in, err)
	})
	mux.HandleFunc("GET /v1/status/incidents/{id}/postmortem", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		in, err := p.Incident(id)
		if err == nil && in.Postmortem != "" {
			p.reply(w, http.StatusOK, map[string]string{"markdown": in.Postmortem, "published": "true"}, nil)
			return
		}
		md, err := p.PostmortemSkeleton(id)
		p.reply(w, http.StatusOK, map[string]string{"markdown": md}, err)
	})
	mux.HandleFunc("PUT /v1/status/incidents/{id}/postmortem", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Markdown string `json:"markdown"`
		}
		if !readJSON(w, r, &req) {
			return
		}
		in, err := p.PublishPostmortem(r.Context(), r.PathValue("id"), req.Markdown)
		p.reply(w, http.StatusOK, in, err)
	})
	mux.HandleFunc("GET /v1/status/maintenances", func(w http.ResponseWriter, r *http.Request) {
		list := p.Maintenances()
		if list == nil {
			list = []MaintenanceWindow{}
		}
		writeJSON(w, http.StatusOK, map[string]any{"maintenances": list})
	})
	mux.HandleFunc("POST /v1/status/maintenances", func(w http.ResponseWriter, r *http.Request) {
		var req MaintenanceRequest
		if !readJSON(w, r, &req) {
			return
		}
		m, err := p.ScheduleMaintenance(r.Context(), req)
		p.reply(w, http.StatusCreated, m, err)
	})
	mux.HandleFunc("POST /v1/status/maintenances/{id}/{action}", func(w http.ResponseWriter, r *http.Request) {
		status, ok := map[string]string{"start": InProgress, "verify": Verifying, "complete": Completed}[r.PathValue("action")]
		if !ok {
			writeError(w, http.StatusNotFound, "not_found", "action: must be start, verify or complete")
			return
		}
		var req struct {
			Body string `json:"body"`
		}
		if !readJSON(w, r, &req) {
			return
		}
		m, err := p.SetMaintenanceStatus(r.Context(), r.PathValue("id"), status, req.Body)
		p.reply(w, http.StatusOK, m, err)
	})
	mux.HandleFunc("GET /v1/status/webhooks", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"subscribers": p.Subscribers()})
	})
	mux.HandleFunc("POST /v1/status/webhooks", func(w http.ResponseWriter, r *http.Request) {
		var req SubscriberRequest
		if !readJSON(w, r, &req) {
			return
		}
		// The secret is in this answer only.
		s, err := p.AddSubscriber(r.Context(), req)
		p.reply(w, http.StatusCreated, s, err)
	})
	mux.HandleFunc("DELETE /v1/status/webhooks/{id}", func(w http.ResponseWriter, r *http.Request) {
		err := p.RemoveSubscriber(r.Context(), r.PathValue("id"))
		p.reply(w, http.StatusOK, map[string]string{"removed": r.PathValue("id")}, err)
	})
	// GET /v1/status/webhooks/deliveries[?subscriber=ID]
	mux.HandleFunc("GET /v1/status/webhooks/deliveries", func(w http.ResponseWriter, r *http.Request) {
		sub := r.URL.Query().Get("subscriber")
		if sub != "" && !p.hasSubscriber(sub) && len(p.Deliveries(sub)) == 0 {
			p.reply(w, 0, nil, &NotFoundError{Kind: "subscriber", ID: sub})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"deliveries": p.Deliveries(sub)})
	})
	// GET /v1/status/site?after=REV waits (up to wait, default 25s) for a
	// rendering newer than REV, then returns the whole site. The wait is
	// capped below the listener's write timeout (maxWait), so that the
	// answer is still written: a client that asks for more is answered at
	// the cap, with the revision it already has, and polls again.
	mux.HandleFunc("GET /v1/status/site", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if v := q.Get("after"); v != "" {
			after, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				writeError(w, http.StatusBadRequest, "invalid_input", "after: must be a revision number")
				return
			}
			wait := DefaultSiteWait
			if v := q.Get("wait"); v != "" {
				d, err := time.ParseDuration(v)
				if err != nil || d < 0 || d > MaxSiteWait {
					writeError(w, http.StatusBadRequest, "invalid_input", "wait: must be a duration up to "+fmtWait(MaxSiteWait))
					return
				}
				wait = d
			}
			p.waitRevision(r.Context(), after, min(wait, maxWait(r)))
		}
		s := p.site.Load()
		out := SiteExport{Revision: s.rev, Files: make(map[string]string, len(s.files))}
		for k, f := range s.files {
			out.Files[k] = string(f.body)
		}
		writeJSON(w, http.StatusOK, out)
	})
	return mux
}

// Long-poll bounds of GET /v1/status/site.
const (
	DefaultSiteWait = 25 * time.Second
	MaxSiteWait     = 5 * time.Minute
)

// fmtWait prints 5m rather than 5m0s.
func fmtWait(d time.Duration) string {
	return strings.TrimSuffix(strings.TrimSuffix(d.String(), "0s"), "0m")
}

// maxWait is the longest a long poll on r may wait: below the write
// timeout of the server that serves r, with a margin for writing the
// answer (a quarter of the timeout, at least 5s, at most half of it).
// Without a write timeout it is MaxSiteWait.
func maxWait(r *http.Request) time.Duration {
	srv, _ := r.Context().Value(http.ServerContextKey).(*http.Server)
	if srv == nil || srv.WriteTimeout <= 0 {
		return MaxSiteWait
	}
	wt := srv.WriteTimeout
	margin := min(max(wt/4, 5*time.Second), wt/2)
	return min(wt-margin, MaxSiteWait)
}

// waitRevision returns once the site's revision is above after, the wait
// has passed or ctx is done.
func (p *Portal) waitRevision(ctx context.Context, after uint64, wait time.Duration) {
	t := time.NewTimer(wait)
	defer t.Stop()
	for p.Revision() <= after {
		select {
		case <-p.Changed():
		case <-t.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// Export writes the rendered site into dir.
func (p *Portal) Export(dir string) error { return WriteSite(dir, p.Files()) }

// WriteSite writes files (path → content, slash-separated relative paths)
// under dir, each through a temporary file and a rename so a reader of the
// published directory never sees half a file. Paths that would leave dir
// are refused.
func WriteSite(dir string, files map[string][]byte) error {
	paths := make([]string, 0, len(files))
	for k := range files {
		paths = append(paths, k)
	}
	sort.Strings(paths)
	for _, rel := range paths {
		clean := filepath.FromSlash(rel)
		if !filepath.IsLocal(clean) {
			return &InputError{Field: "files", Msg: "path " + strconv.Quote(rel) + " leaves the export directory"}
		}
		full := filepath.Join(dir, clean)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		tmp, err := os.CreateTemp(filepath.Dir(full), ".export-*")
		if err != nil {
			return err
		}
		_, werr := tmp.Write(files[rel])
		cerr := tmp.Close()
		if err := errors.Join(werr, cerr, os.Chmod(tmp.Name(), 0o644)); err != nil {
			os.Remove(tmp.Name())
			return err
		}
		if err := os.Rename(tmp.Name(), full); err != nil {
			os.Remove(tmp.Name())
			return err
		}
	}
	return nil
}

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	if r.ContentLength == 0 && r.Body == http.NoBody {
		return true // an empty body is an empty request
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		writeError(w, http.StatusUnsupportedMediaType, "invalid_input", "Content-Type must be application/json")
		return false
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRequestBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return true
		}
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, "too_large", "request body exceeds "+strconv.Itoa(maxRequestBody)+" bytes")
			return false
		}
		writeError(w, http.StatusBadRequest, "invalid_input", "request body: "+err.Error())
		return false
	}
	return true
}

func (p *Portal) reply(w http.ResponseWriter, status int, v any, err error) {
	if err == nil {
		writeJSON(w, status, v)
		return
	}
	status, code := fault.HTTP(err)
	if status == http.StatusInternalServerError {
		p.log.Error("status management request failed", "err", err)
	}
	writeError(w, status, code, fault.Public(err))
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	var b struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
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
