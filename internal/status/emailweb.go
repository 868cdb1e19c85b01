package status

import (
	"bytes"
	"errors"
	"html/template"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// The portal's only write endpoints, on the public status listener:
//
//	POST /subscribe                  email, component… → "confirmation sent"
//	GET  /subscribe/confirm?id&t     a page with a button that confirms
//	POST /subscribe/confirm?id&t     confirms (the token is the only thing that subscribes)
//	GET  /subscribe/manage?s&t       the component choice
//	POST /subscribe/manage?s&t       changes it
//	GET  /subscribe/unsubscribe?s&t  a page with a button
//	POST /subscribe/unsubscribe?s&t  unsubscribes (RFC 8058 one-click)
//
// Confirmation takes a POST so that a mail scanner that opens links does
// not subscribe anyone. Nothing a client sent is reflected in an answer.

// Limits of the public subscribe endpoints.
const (
	maxSubscribeBody   = 8 << 10
	maxTrackedClients  = 100000 // rate-limit entries kept per kind
	subscribeRateEvery = time.Hour
)

// subscribeLimits counts subscribe requests per client address and per
// email address over an hour.
type subscribeLimits struct {
	// mu guards the limits and the maps.
	mu             sync.Mutex
	perIP, perAddr int
	start          time.Time
	ips            map[string]int
	addrs          map[string]int
	refused        uint64
}

func newSubscribeLimits(perIP, perAddr int) *subscribeLimits {
	return &subscribeLimits{perIP: perIP, perAddr: perAddr, ips: map[string]int{}, addrs: map[string]int{}}
}

// set changes the limits (a reload).
func (l *subscribeLimits) set(perIP, perAddr int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.perIP, l.perAddr = perIP, perAddr
}

// allow counts one request from ip for addr and reports whether it is
// within the limits. A full table refuses new entries.
func (l *subscribeLimits) allow(now time.Time, ip, addr string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.start) >= subscribeRateEvery {
		l.start, l.ips, l.addrs = now, map[string]int{}, map[string]int{}
	}
	addr = strings.ToLower(addr)
	_, ipKnown := l.ips[ip]
	_, addrKnown := l.addrs[addr]
	if (!ipKnown && len(l.ips) >= maxTrackedClients) || (!addrKnown && len(l.addrs) >= maxTrackedClients) ||
		l.ips[ip] >= l.perIP || l.addrs[addr] >= l.perAddr {
		l.refused++
		return false
	}
	l.ips[ip]++
	l.addrs[addr]++
	return true
}

// SubscribeLimits returns the number of client addresses and of email
// addresses tracked by the subscribe rate limits, and the bound of each,
// for the capacity registry; all zero without status.email.
func (p *Portal) SubscribeLimits() (ips, addrs, limit int64) {
	if p.mail == nil {
		return 0, 0, 0
	}
	l := p.mail.limits
	l.mu.Lock()
	defer l.mu.Unlock()
	return int64(len(l.ips)), int64(len(l.addrs)), maxTrackedClients
}

func clientIP(r *http.Request) string {
	h, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return h
}

var subscribeCSP = []string{"default-src 'none'; style-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"}

type subPage struct {
	Title, Heading, Message string
	Action, Button          string
	Root                    string
	Components              []subComp
	Status                  int
}

type subComp struct {
	ID, Name string
	Checked  bool
}

var subPageTmpl = template.Must(template.New("sub").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{{.Heading}} · {{.Title}}</title><link rel="stylesheet" href="{{.Root}}assets/status.css"></head>
<body><header class="top"><h1><a href="{{.Root}}index.html">{{.Title}}</a></h1></header>
<main id="content"><h2 id="sub-heading">{{.Heading}}</h2>
<p id="sub-message">{{.Message}}</p>
{{if .Action}}<form method="post" action="{{.Action}}">
{{if .Components}}<fieldset><legend>Components (none checked: all)</legend>
{{range .Components}}<label><input type="checkbox" name="component" value="{{.ID}}"{{if .Checked}} checked{{end}}> {{.Name}}</label><br>
{{end}}</fieldset>{{end}}
<button type="submit" id="sub-button">{{.Button}}</button></form>{{end}}
</main></body></html>
`))

func (p *Portal) subPage(w http.ResponseWriter, pg subPage) {
	pg.Title = p.pageTitle()
	if pg.Root == "" {
		pg.Root = "../"
	}
	h := w.Header()
	h["Content-Security-Policy"] = subscribeCSP
	h["X-Content-Type-Options"] = hdrNoSniff
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Type", "text/html; charset=utf-8")
	if pg.Status == 0 {
		pg.Status = http.StatusOK
	}
	w.WriteHeader(pg.Status)
	subPageTmpl.Execute(w, pg)
}

// serveSubscribe handles the /subscribe endpoints; it reports false for
// other paths.
func (p *Portal) serveSubscribe(w http.ResponseWriter, r *http.Request) bool {
	path := r.URL.Path
	if path != "/subscribe" && !strings.HasPrefix(path, "/subscribe/") {
		return false
	}
	e := p.mail
	if e == nil {
		http.NotFound(w, r)
		return true
	}
	switch {
	case path == "/subscribe" && r.Method == http.MethodPost:
		p.handleSubscribe(w, r)
	case path == "/subscribe/confirm":
		p.handleConfirm(w, r)
	case path == "/subscribe/unsubscribe":
		p.handleUnsubscribe(w, r)
	case path == "/subscribe/manage":
		p.handleManage(w, r)
	default:
		http.NotFound(w, r)
	}
	return true
}

// readForm parses a small urlencoded body; it refuses anything else.
func readForm(w http.ResponseWriter, r *http.Request) bool {
	r.Body = http.MaxBytesReader(w, r.Body, maxSubscribeBody)
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		http.Error(w, "form must be application/x-www-form-urlencoded", http.StatusUnsupportedMediaType)
		return false
	}
	if err := r.ParseForm(); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			http.Error(w, "form too large", http.StatusRequestEntityTooLarge)
		} else {
			http.Error(w, "malformed form", http.StatusBadRequest)
		}
		return false
	}
	return true
}

func (p *Portal) handleSubscribe(w http.ResponseWriter, r *http.Request) {
	if !readForm(w, r) {
		return
	}
	addr := r.PostForm.Get("email")
	comps := r.PostForm["component"]
	if len(r.PostForm["email"]) != 1 {
		p.subPage(w, subPage{Root: "", Heading: "Not subscribed", Message: "Give exactly one email address.", Status: http.StatusBadRequest})
		return
	}
	allowed := p.mail.limits.allow(p.now(), clientIP(r), addr)
	if allowed {
		var err error
		if allowed, err = p.mail.allowShared(r.Context(), p.now(), clientIP(r), addr); err != nil {
			p.log.Warn("status email: counting a subscribe request", "err", err)
			p.subPage(w, subPage{Root: "", Heading: "Not subscribed", Message: "The subscription could not be recorded; try again later.", Status: http.StatusServiceUnavailable})
			return
		}
	}
	if !allowed {
		w.Header().Set("Retry-After", "3600")
		p.subPage(w, subPage{Root: "", Heading: "Too many requests", Message: "Too many subscription requests; try again later.", Status: http.StatusTooManyRequests})
		return
	}
	if err := p.mail.subscribe(r.Context(), addr, comps); err != nil {
		var in *InputError
		if errors.As(err, &in) {
			msg := "The email address is not valid."
			if in.Field == "component" {
				msg = "A chosen component does not exist."
			}
			p.subPage(w, subPage{Root: "", Heading: "Not subscribed", Message: msg, Status: http.StatusBadRequest})
			return
		}
		p.log.Warn("status email: recording a subscription", "err", err)
		p.subPage(w, subPage{Root: "", Heading: "Not subscribed", Message: "The subscription could not be recorded; try again later.", Status: http.StatusServiceUnavailable})
		return
	}
	p.subPage(w, subPage{Root: "", Heading: "Check your inbox",
		Message: "A confirmation email is on its way. Open its link to start receiving notifications; until then nothing is sent."})
}

func (p *Portal) linkError(w http.ResponseWriter, err error) {
	if errors.Is(err, ErrBadLink) {
		p.subPage(w, subPage{Heading: "Link not valid", Message: ErrBadLink.Error(), Status: http.StatusNotFound})
		return
	}
	p.log.Warn("status email: following a link", "err", err)
	p.subPage(w, subPage{Heading: "Try again later", Message: "The request could not be completed; try again later.", Status: http.StatusServiceUnavailable})
}

func (p *Portal) handleConfirm(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	id, tok := q.Get("id"), q.Get("t")
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		if !validRecordID(id) || !p.mail.checkToken(r.Context(), purposeConfirm, id, "", tok) {
			p.linkError(w, ErrBadLink)
			return
		}
		p.subPage(w, subPage{Heading: "Confirm your subscription", Message: "Press the button to start receiving notifications by email.",
			Action: "confirm?id=" + id + "&t=" + tok, Button: "Confirm subscription"})
	case http.MethodPost:
		if !readForm(w, r) {
			return
		}
		if _, err := p.mail.confirm(r.Context(), id, tok); err != nil {
			p.linkError(w, err)
			return
		}
		p.subPage(w, subPage{Heading: "Subscription confirmed", Message: "You will receive an email when an incident or maintenance concerns what you follow. Every email has a link to unsubscribe."})
	default:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

func (p *Portal) handleUnsubscribe(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	sid, tok := q.Get("s"), q.Get("t")
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		if _, _, err := p.mail.subscriber(r.Context(), sid, tok); err != nil {
			p.linkError(w, err)
			return
		}
		p.subPage(w, subPage{Heading: "Unsubscribe", Message: "Press the button to stop all email from this status page.",
			Action: "unsubscribe?s=" + sid + "&t=" + tok, Button: "Unsubscribe"})
	case http.MethodPost: // the button, or a mail client's one-click POST (RFC 8058)
		if !readForm(w, r) {
			return
		}
		if err := p.mail.unsubscribe(r.Context(), sid, tok); err != nil {
			p.linkError(w, err)
			return
		}
		p.subPage(w, subPage{Heading: "Unsubscribed", Message: "You will receive no more email from this status page."})
	default:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

func (p *Portal) handleManage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	sid, tok := q.Get("s"), q.Get("t")
	action := "manage?s=" + sid + "&t=" + tok
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		s, _, err := p.mail.subscriber(r.Context(), sid, tok)
		if err != nil {
			p.linkError(w, err)
			return
		}
		msg := "Choose the components you want to hear about."
		if s.Suspended {
			msg = "This subscription is suspended: the mail server refused several messages to this address. Saving your choice resumes it."
		}
		p.subPage(w, subPage{Heading: "Your subscription", Message: msg, Action: action, Button: "Save", Components: p.subComps(s.Components)})
	case http.MethodPost:
		if !readForm(w, r) {
			return
		}
		s, err := p.mail.setComponents(r.Context(), sid, tok, r.PostForm["component"])
		if err != nil {
			var in *InputError
			if errors.As(err, &in) {
				p.subPage(w, subPage{Heading: "Not saved", Message: "A chosen component does not exist.", Status: http.StatusBadRequest})
				return
			}
			p.linkError(w, err)
			return
		}
		p.subPage(w, subPage{Heading: "Saved", Message: "Your choice is saved.", Action: action, Button: "Save", Components: p.subComps(s.Components)})
	default:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

// subComps lists the components for a form, those in ids checked.
func (p *Portal) subComps(ids []string) []subComp {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]subComp, 0, len(p.comps))
	for _, c := range p.comps {
		name := c.Name
		if c.Region != "" {
			name = c.Region + " / " + c.Name
		}
		checked := false
		for _, id := range ids {
			checked = checked || id == c.ID
		}
		out = append(out, subComp{ID: c.ID, Name: name, Checked: checked})
	}
	return out
}

var subscribeFormTmpl = template.Must(template.New("form").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Email notifications · {{.Title}}</title><link rel="stylesheet" href="assets/status.css"></head>
<body><header class="top"><h1><a href="index.html">{{.Title}}</a></h1></header>
<main id="content"><h2>Email notifications</h2>
<p>Receive an email when an incident or a maintenance concerns the components you choose. You will first get an email to confirm the address.</p>
<form method="post" action="{{.Action}}" id="subscribe-form">
<p><label for="email">Email address</label><br><input type="email" id="email" name="email" required maxlength="254" autocomplete="email"></p>
<fieldset><legend>Components (none checked: all)</legend>
{{range .Components}}<label><input type="checkbox" name="component" value="{{.ID}}"> {{.Name}}</label><br>
{{end}}</fieldset>
<p><button type="submit" id="subscribe-button">Subscribe</button></p>
</form></main></body></html>
`))

// renderSubscribeLocked adds subscribe.html to the site: a plain form that
// posts to the live portal (public_url), so it works in the static export.
func (p *Portal) renderSubscribeLocked(b *siteBuilder) {
	comps := make([]subComp, 0, len(p.comps))
	for _, c := range p.comps {
		name := c.Name
		if c.Region != "" {
			name = c.Region + " / " + c.Name
		}
		comps = append(comps, subComp{ID: c.ID, Name: name})
	}
	action, origin := "subscribe", "'self'"
	if pub := p.mail.conf().pub; pub != "" {
		action = pub + "subscribe"
		if u, err := url.Parse(pub); err == nil {
			origin = "'self' " + u.Scheme + "://" + u.Host
		}
	}
	data := map[string]any{"Title": p.title, "Action": action, "Components": comps}
	b.do(func(b *siteBuilder) {
		var buf bytes.Buffer
		if err := subscribeFormTmpl.Execute(&buf, data); err != nil && b.err == nil {
			b.err = err
		}
		b.add("subscribe.html", "text/html; charset=utf-8", buf.Bytes())
		b.files["subscribe.html"].csp = []string{"default-src 'none'; style-src 'self'; base-uri 'none'; form-action " + origin + "; frame-ancestors 'none'"}
	})
}
