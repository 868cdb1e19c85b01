// Package console is the operator's console: HTML pages on the admin
// listener under /console/, rendered on the server, without JavaScript.
// A browser signs in with an admin token; the console keeps a server-side
// session (in this node's memory, bounded) and re-checks the token against
// the store on every request, so a revoked token ends its sessions.
package console

import (
	"context"
	"embed"
	"errors"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"gatehouse/internal/admin"
	"gatehouse/internal/capacity"
	"gatehouse/internal/certs"
)

//go:embed templates/*.html static/console.css
var files embed.FS

var pages = template.Must(template.New("").Funcs(template.FuncMap{
	"pct": func(f float64) string {
		if f < 0 {
			return "–"
		}
		return strconv.FormatFloat(f, 'f', 1, 64) + " %"
	},
	"limit": func(n int64) string {
		if n <= 0 {
			return "none"
		}
		return strconv.FormatInt(n, 10)
	},
	"when": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") },
}).ParseFS(files, "templates/*.html"))

// Names of the cookies the console sets.
const (
	sessionCookie = "gatehouse_console"
	signinCookie  = "gatehouse_console_signin" // the sign-in form's CSRF pair
)

// Sign-in rate limit per client address, by default.
const (
	DefaultSigninPerMinute = 10
	maxLimiterAddrs        = 10000
	maxFormBody            = 4 << 10
)

// Policy is the console's Content-Security-Policy.
const Policy = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// Options configures a Console. Authenticate is required; every other
// source is optional and its section is left out when nil.
type Options struct {
	Logger *slog.Logger
	// Authenticate checks a token and returns its name and scopes
	// (admin.Server.Authenticate).
	Authenticate func(ctx context.Context, token string) (string, []admin.Scope, error)
	// Limits returns the capacity registry's resources; Levels its warning
	// and critical percentages.
	Limits  func() []capacity.Resource
	Levels  func() (warn, crit float64)
	History *History
	// Expiry counts the installed certificates by expiry.
	Expiry func() certs.ExpiryCounts
	// Hostnames counts the customer hostnames by state.
	Hostnames func() map[string]int
	// Audit is the audit trail; the overview shows its last entries.
	Audit *admin.Audit
	// Search pages through the installed hostnames by prefix
	// (certs.Manager.SearchNames); nil: no search page.
	Search func(ctx context.Context, prefix, after string, limit int) ([]certs.NameInfo, bool, error)
	// Node names the node the console runs on.
	Node string

	SessionTTL, SessionIdle time.Duration
	MaxSessions             int
	SigninPerMinute         int
	Now                     func() time.Time
}

// Console is the console's http.Handler, mounted at /console/.
type Console struct {
	opts     Options
	log      *slog.Logger
	sessions *sessions
	signins  *limiter
	mux      *http.ServeMux
}

// New returns the console.
func New(opts Options) (*Console, error) {
	if opts.Authenticate == nil {
		return nil, errors.New("console: Authenticate is required")
	}
	if opts.SigninPerMinute <= 0 {
		opts.SigninPerMinute = DefaultSigninPerMinute
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Console{opts: opts, log: log.With("component", "console"),
		sessions: newSessions(opts.SessionTTL, opts.SessionIdle, opts.MaxSessions, opts.Now),
		signins:  newLimiter(opts.SigninPerMinute, time.Minute, maxLimiterAddrs, opts.Now),
		mux:      http.NewServeMux()}
	c.mux.HandleFunc("GET /console/{$}", c.signedIn(c.overview))
	c.mux.HandleFunc("GET /console/hostnames", c.signedIn(c.hostnames))
	c.mux.HandleFunc("POST /console/signin", c.signin)
	c.mux.HandleFunc("POST /console/signout", c.signout)
	c.mux.HandleFunc("GET /console/console.css", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
		http.ServeFileFS(w, r, files, "static/console.css")
	})
	return c, nil
}

// Sessions reports the sessions this node holds.
func (c *Console) Sessions() int { return c.sessions.len() }

// ServeHTTP sets the console's headers and dispatches.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", Policy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	c.mux.ServeHTTP(w, r)
}

// current returns the request's session with its token re-checked, or
// false (the session is then ended).
func (c *Console) current(r *http.Request) (session, []admin.Scope, bool) {
	ck, err := r.Cookie(sessionCookie)
	if err != nil {
		return session{}, nil, false
	}
	se, ok := c.sessions.get(ck.Value)
	if !ok {
		return session{}, nil, false
	}
	_, scopes, err := c.opts.Authenticate(r.Context(), se.token)
	if err != nil {
		c.sessions.remove(se.id)
		c.log.Info("console session ended: its token is no longer valid", "token", se.name)
		return session{}, nil, false
	}
	return se, scopes, true
}

func (c *Console) render(w http.ResponseWriter, status int, name string, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := pages.ExecuteTemplate(w, name, data); err != nil {
		c.log.Warn("console page failed", "page", name, "err", err)
	}
}

// signinPage renders the sign-in form with a fresh CSRF pair: a cookie and
// the same value in the form.
func (c *Console) signinPage(w http.ResponseWriter, status int, msg string) {
	v := randomID()
	http.SetCookie(w, &http.Cookie{Name: signinCookie, Value: v, Path: "/console/", HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode, MaxAge: 3600})
	c.render(w, status, "signin.html", map[string]any{"CSRF": v, "Error": msg, "Node": c.opts.Node})
}

func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func (c *Console) signin(w http.ResponseWriter, r *http.Request) {
	if ok, wait := c.signins.allow(clientAddr(r)); !ok {
		w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())+1))
		c.log.Warn("console sign-in refused: too many attempts", "remote", r.RemoteAddr)
		c.signinPage(w, http.StatusTooManyRequests, "Too many sign-in attempts from your address; try again in a minute.")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
	if err := r.ParseForm(); err != nil {
		c.signinPage(w, http.StatusBadRequest, "The form could not be read.")
		return
	}
	ck, err := r.Cookie(signinCookie)
	if err != nil || !csrfOK(ck.Value, r.PostForm.Get("csrf")) {
		c.signinPage(w, http.StatusForbidden, "The form expired or was not sent by this console; sign in again.")
		return
	}
	token := r.PostForm.Get("token")
	name, scopes, err := c.opts.Authenticate(r.Context(), token)
	if err != nil {
		c.log.Warn("console sign-in refused", "remote", r.RemoteAddr, "reason", "invalid token")
		c.signinPage(w, http.StatusUnauthorized, "That token is not valid.")
		return
	}
	if !grants(scopes, admin.ScopeRead) {
		c.signinPage(w, http.StatusForbidden, "That token lacks the read scope the console needs.")
		return
	}
	se := c.sessions.create(token, name)
	http.SetCookie(w, &http.Cookie{Name: signinCookie, Value: "", Path: "/console/", MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: se.id, Path: "/console/", HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	c.log.Info("console sign-in", "token", name, "remote", r.RemoteAddr)
	http.Redirect(w, r, "/console/", http.StatusSeeOther)
}

func (c *Console) signout(w http.ResponseWriter, r *http.Request) {
	se, _, ok := c.current(r)
	if !ok {
		c.signinPage(w, http.StatusUnauthorized, "")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
	if err := r.ParseForm(); err != nil || !csrfOK(se.csrf, r.PostForm.Get("csrf")) {
		http.Error(w, "forbidden: the form's CSRF token does not match this session", http.StatusForbidden)
		return
	}
	c.sessions.remove(se.id)
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/console/", MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	c.log.Info("console sign-out", "token", se.name, "remote", r.RemoteAddr)
	http.Redirect(w, r, "/console/", http.StatusSeeOther)
}

func grants(have []admin.Scope, need admin.Scope) bool {
	return slices.Contains(have, admin.ScopeAdmin) || slices.Contains(have, need)
}

// row is one line of the capacity table.
type row struct {
	capacity.Resource
	Chart template.HTML
}

// auditEntries is how many of the last changes the overview lists.
const auditEntries = 20

// signedIn serves h to a request with a live session; any other gets the
// sign-in page.
func (c *Console) signedIn(h func(w http.ResponseWriter, r *http.Request, se session, scopes []admin.Scope)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		se, scopes, ok := c.current(r)
		if !ok {
			c.signinPage(w, http.StatusOK, "")
			return
		}
		h(w, r, se, scopes)
	}
}

func (c *Console) overview(w http.ResponseWriter, r *http.Request, se session, scopes []admin.Scope) {
	warn, crit := float64(capacity.DefaultWarnPercent), float64(capacity.DefaultCriticalPercent)
	if c.opts.Levels != nil {
		warn, crit = c.opts.Levels()
	}
	data := map[string]any{"Token": se.name, "Scopes": admin.JoinScopes(scopes, ", "), "CSRF": se.csrf, "Node": c.opts.Node, "Warn": warn, "Crit": crit, "Search": c.opts.Search != nil}
	if c.opts.Limits != nil {
		var rows []row
		for _, res := range c.opts.Limits() {
			rw := row{Resource: res}
			if c.opts.History != nil {
				rw.Chart = sparkline(c.opts.History.series(res.Name), warn, crit)
			}
			rows = append(rows, rw)
		}
		data["Capacity"] = rows
		if c.opts.History != nil {
			data["Samples"] = c.opts.History.Len()
		}
	}
	if c.opts.Expiry != nil {
		e := c.opts.Expiry()
		data["Certs"] = []struct {
			State string
			N     int64
		}{
			{"valid (more than 30 days left)", e.Total - e.Expired - e.Within30Days},
			{"expiring within 30 days (more than 7)", e.Within30Days - e.Within7Days},
			{"expiring within 7 days", e.Within7Days},
			{"expired", e.Expired},
		}
		data["CertsTotal"] = e.Total
	}
	if c.opts.Hostnames != nil {
		type st struct {
			State string
			N     int
		}
		var hs []st
		for s, n := range c.opts.Hostnames() {
			hs = append(hs, st{s, n})
		}
		slices.SortFunc(hs, func(a, b st) int { return strings.Compare(a.State, b.State) })
		data["Hostnames"] = hs
	}
	if c.opts.Audit != nil {
		recs, err := c.opts.Audit.Recent(r.Context(), auditEntries)
		if err != nil {
			c.log.Warn("console: reading the audit trail failed", "err", err)
			data["AuditError"] = "The audit trail could not be read: " + err.Error()
		}
		data["Audit"] = recs
	}
	c.render(w, http.StatusOK, "overview.html", data)
}

// searchPage is how many hostnames a page of the search shows.
const searchPage = 50

// hostnames is the search page: installed hostnames by name prefix, paged
// on the server by a cursor (the last name shown).
func (c *Console) hostnames(w http.ResponseWriter, r *http.Request, se session, _ []admin.Scope) {
	if c.opts.Search == nil {
		http.NotFound(w, r)
		return
	}
	q := r.URL.Query()
	prefix, after := strings.TrimSpace(q.Get("prefix")), q.Get("after")
	data := map[string]any{"Token": se.name, "CSRF": se.csrf, "Node": c.opts.Node, "Prefix": prefix}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	names, more, err := c.opts.Search(ctx, prefix, after, searchPage)
	status := http.StatusOK
	switch {
	case errors.Is(err, certs.ErrBadPrefix):
		status = http.StatusBadRequest
		data["Error"] = "prefix: " + err.Error()
	case err != nil:
		status = http.StatusServiceUnavailable
		data["Error"] = "The search failed: " + err.Error()
		c.log.Warn("console: hostname search failed", "err", err)
	default:
		data["Names"] = names
		if more && len(names) > 0 {
			data["Next"] = "/console/hostnames?" + url.Values{"prefix": {prefix}, "after": {names[len(names)-1].Name}}.Encode()
		}
		data["After"] = after
	}
	c.render(w, status, "hostnames.html", data)
}
