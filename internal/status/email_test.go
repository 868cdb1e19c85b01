package status

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gatehouse/internal/config"
	"gatehouse/internal/mailer/smtptest"
	"gatehouse/internal/store"
	"gatehouse/internal/store/bolt"
)

type mailFixture struct {
	*fixture
	smtp *smtptest.Server
	web  *httptest.Server
}

// newMailFixture starts a leading portal with status.email pointing at a
// real SMTP server (STARTTLS, AUTH PLAIN) on loopback, and serves the
// public portal on a test listener whose URL is the public URL.
func newMailFixture(t *testing.T, mod func(*config.StatusEmail)) *mailFixture {
	t.Helper()
	srv, err := smtptest.Start(smtptest.Options{Username: "status", Password: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	pwFile := filepath.Join(dir, "pw")
	writeFile(t, caFile, srv.CAPEM)
	writeFile(t, pwFile, []byte("s3cret\n"))
	mf := &mailFixture{smtp: srv}
	var p *Portal
	mf.web = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { p.ServeHTTP(w, r) }))
	t.Cleanup(mf.web.Close)
	st, err := bolt.Open(filepath.Join(dir, "status.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{clock: &clock{t: t0}, h: &health{pools: map[string][]bool{"web": {true, true}, "mobile": {true}, "web-us": {true}}}, st: st, dir: dir}
	cfg := testStatus
	cfg.Email = &config.StatusEmail{
		SMTP: config.SMTP{Host: "127.0.0.1", Port: srv.Port(), Username: "status", PasswordFile: pwFile, CAFile: caFile},
		From: "University status <status@example.edu>", PublicURL: mf.web.URL + "/", RatePerSecond: 1000, MaxFailures: 2,
		PerIPPerHour: 50,
	}
	if mod != nil {
		mod(cfg.Email)
	}
	p = New(cfg, nil, f.h.source, Options{Logger: testLogger(t), Now: f.clock.Now, Store: st, IDs: seqIDs(), Interval: time.Hour})
	f.p = p
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	stopLead := lead(t, p)
	t.Cleanup(func() {
		stopLead()
		p.Close()
		st.Close()
	})
	mf.fixture = f
	return mf
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := writeFileErr(path, b); err != nil {
		t.Fatal(err)
	}
}

// received is one accepted message, parsed.
type received struct {
	to         string
	header     mail.Header
	text, html string
}

var linkRE = regexp.MustCompile(`https?://[^\s"<>]+`)

func (r received) link(t *testing.T, part string) string {
	t.Helper()
	for _, l := range linkRE.FindAllString(r.text, -1) {
		if strings.Contains(l, part) {
			return l
		}
	}
	t.Fatalf("no link containing %q in %q", part, r.text)
	return ""
}

func parseMail(t *testing.T, m smtptest.Message) received {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
	if err != nil {
		t.Fatal(err)
	}
	_, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil {
		t.Fatal(err)
	}
	r := received{to: strings.Join(m.To, ","), header: msg.Header}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(part)
		if strings.HasPrefix(part.Header.Get("Content-Type"), "text/html") {
			r.html = string(b)
		} else {
			r.text = string(b)
		}
	}
	if r.text == "" || r.html == "" {
		t.Fatalf("message to %s lacks a part: text %q html %q", r.to, r.text, r.html)
	}
	return r
}

// mails returns the messages accepted since index from.
func (mf *mailFixture) mails(t *testing.T, from int) []received {
	var out []received
	for _, m := range mf.smtp.Messages()[from:] {
		out = append(out, parseMail(t, m))
	}
	return out
}

// drained waits until the sender has nothing left to send.
func (mf *mailFixture) drained(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		mf.p.mailWG.Wait()
		n := 0
		for _, prefix := range []string{keyMailEvents, keyMailQueue} {
			kvs, _, err := mf.st.List(context.Background(), prefix, "", 0)
			if err != nil {
				t.Fatal(err)
			}
			n += len(kvs)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d items still queued", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (mf *mailFixture) post(t *testing.T, target string, form url.Values) (int, string) {
	t.Helper()
	resp, err := http.PostForm(target, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (mf *mailFixture) get(t *testing.T, target string) (int, string) {
	t.Helper()
	resp, err := http.Get(target)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (mf *mailFixture) compID(ref string) string {
	mf.p.mu.Lock()
	defer mf.p.mu.Unlock()
	c, err := mf.p.resolveComponentLocked("c", ref)
	if err != nil {
		panic(err)
	}
	return c.ID
}

// subscribeAndConfirm subscribes addr through the form and confirms it
// with the link of the confirmation email.
func (mf *mailFixture) subscribeAndConfirm(t *testing.T, addr string, comps ...string) {
	t.Helper()
	n := len(mf.smtp.Messages())
	code, body := mf.post(t, mf.web.URL+"/subscribe", url.Values{"email": {addr}, "component": comps})
	if code != 200 || !strings.Contains(body, "confirmation email is on its way") || strings.Contains(body, addr) {
		t.Fatalf("subscribe: %d %s", code, body)
	}
	mf.drained(t)
	got := mf.mails(t, n)
	if len(got) != 1 || got[0].to != addr {
		t.Fatalf("confirmation: got %d messages (%+v), want one to %s", len(got), got, addr)
	}
	link := got[0].link(t, "/subscribe/confirm")
	if !strings.Contains(got[0].html, "Confirm the subscription") {
		t.Errorf("confirmation HTML: %q", got[0].html)
	}
	code, body = mf.get(t, link)
	if code != 200 || !strings.Contains(body, "Confirm subscription") {
		t.Fatalf("confirm page: %d %s", code, body)
	}
	code, body = mf.post(t, link, nil)
	if code != 200 || !strings.Contains(body, "Subscription confirmed") {
		t.Fatalf("confirm: %d %s", code, body)
	}
	code, _ = mf.post(t, link, nil)
	if code != http.StatusNotFound {
		t.Fatalf("confirmation replayed: %d, want 404", code)
	}
}

func TestEmailSubscribeNotifyUnsubscribe(t *testing.T) {
	mf := newMailFixture(t, nil)
	web := mf.compID("EU01/Web app")
	mobile := mf.compID("EU01/Mobile app")
	mf.subscribeAndConfirm(t, "ana@example.org", web)
	mf.subscribeAndConfirm(t, "bo@example.org", mobile)
	mf.subscribeAndConfirm(t, "cy@example.org") // everything
	// An unconfirmed one.
	if code, _ := mf.post(t, mf.web.URL+"/subscribe", url.Values{"email": {"dee@example.org"}, "component": {web}}); code != 200 {
		t.Fatal(code)
	}
	mf.drained(t)
	n := len(mf.smtp.Messages())

	in, err := mf.p.OpenIncident(context.Background(), IncidentRequest{Name: "Grades slow — Überlast", Body: "We are **investigating** <script>alert(1)</script>", Components: []string{"EU01/Web app"}})
	if err != nil {
		t.Fatal(err)
	}
	mf.drained(t)
	got := mf.mails(t, n)
	to := map[string]received{}
	for _, r := range got {
		if _, dup := to[r.to]; dup {
			t.Errorf("two messages to %s", r.to)
		}
		to[r.to] = r
	}
	if len(got) != 2 || to["ana@example.org"].to == "" || to["cy@example.org"].to == "" {
		t.Fatalf("incident on Web app: got messages to %v, want ana and cy only", mailKeys(to))
	}
	ana := to["ana@example.org"]
	subj, _ := new(mime.WordDecoder).DecodeHeader(ana.header.Get("Subject"))
	if want := "University services: [Investigating] Grades slow — Überlast"; subj != want {
		t.Errorf("subject = %q, want %q", subj, want)
	}
	if !strings.Contains(ana.text, mf.web.URL+"/incidents/"+in.ID+".html") || !strings.Contains(ana.text, "We are **investigating**") {
		t.Errorf("text part: %q", ana.text)
	}
	if !strings.Contains(ana.html, "<strong>investigating</strong>") || strings.Contains(ana.html, "<script>") {
		t.Errorf("HTML part not rendered from escaped Markdown: %q", ana.html)
	}
	unsub := strings.Trim(ana.header.Get("List-Unsubscribe"), "<>")
	if ana.header.Get("List-Unsubscribe-Post") != "List-Unsubscribe=One-Click" || !strings.HasPrefix(unsub, mf.web.URL+"/subscribe/unsubscribe?") {
		t.Errorf("unsubscribe headers: %q %q", ana.header.Get("List-Unsubscribe"), ana.header.Get("List-Unsubscribe-Post"))
	}
	manage := ana.link(t, "/subscribe/manage")
	if code, body := mf.get(t, manage); code != 200 || !strings.Contains(body, `value="`+web+`" checked`) {
		t.Errorf("manage page: %d %s", code, body)
	}
	// The manage token does not confirm anything, and a changed token fails.
	if code, _ := mf.get(t, strings.Replace(manage, "t=", "t=x", 1)); code != http.StatusNotFound {
		t.Errorf("forged manage token: %d", code)
	}

	// Bo follows the mobile app: switch to the web app too.
	if code, body := mf.post(t, to["cy@example.org"].link(t, "/subscribe/manage"), url.Values{"component": {mobile}}); code != 200 || !strings.Contains(body, "saved") {
		t.Fatalf("manage: %d %s", code, body)
	}

	// One-click unsubscribe (RFC 8058).
	resp, err := http.Post(unsub, "application/x-www-form-urlencoded", strings.NewReader("List-Unsubscribe=One-Click"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("one-click unsubscribe: %d", resp.StatusCode)
	}
	n = len(mf.smtp.Messages())
	mf.clock.Add(time.Minute)
	if _, err := mf.p.UpdateIncident(context.Background(), in.ID, UpdateRequest{Status: Resolved, Body: "Fixed."}); err != nil {
		t.Fatal(err)
	}
	mf.drained(t)
	if got := mf.mails(t, n); len(got) != 0 {
		t.Fatalf("after unsubscribe and change of components: %d messages (%v), want none", len(got), got[0].to)
	}
	// Maintenance on the mobile app reaches bo and cy.
	mf.clock.Add(time.Minute)
	if _, err := mf.p.ScheduleMaintenance(context.Background(), MaintenanceRequest{Name: "DB upgrade", Body: "Short downtime.",
		Components: []string{"EU01/Mobile app"}, ScheduledFor: t0.Add(time.Hour), ScheduledUntil: t0.Add(2 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	mf.drained(t)
	got = mf.mails(t, n)
	if len(got) != 2 {
		t.Fatalf("maintenance: %d messages, want 2 (bo, cy)", len(got))
	}
	// The delivery log shows the email batches beside webhooks.
	var batches int
	for _, d := range mf.p.Deliveries("") {
		if d.Channel == "email" && d.Subscriber == "email" {
			batches++
		}
	}
	if batches != 3 {
		t.Errorf("delivery log: %d email batches, want 3", batches)
	}
}

func mailKeys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestEmailQueuedWhileServerFails(t *testing.T) {
	mf := newMailFixture(t, nil)
	ctx := context.Background()
	const subs = 12
	for i := range subs {
		if _, err := mf.p.AddEmailSubscriber(ctx, EmailSubscriberRequest{Email: fmt.Sprintf("u%02d@example.org", i)}); err != nil {
			t.Fatal(err)
		}
	}
	// 4xx for a while: nothing accepted, nothing lost.
	mf.smtp.TempFail(true)
	in, err := mf.p.OpenIncident(ctx, IncidentRequest{Name: "Outage", Body: "Looking."})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a failed attempt in the delivery log", func() bool {
		for _, d := range mf.p.Deliveries("") {
			if d.Channel == "email" && !d.OK {
				return true
			}
		}
		return false
	})
	mf.smtp.TempFail(false)
	mf.drained(t)
	// Server down: the next update waits for it.
	mf.smtp.Stop()
	mf.clock.Add(time.Minute)
	if _, err := mf.p.UpdateIncident(ctx, in.ID, UpdateRequest{Status: Identified, Body: "Found it."}); err != nil {
		t.Fatal(err)
	}
	mf.p.mailWG.Wait()
	time.Sleep(300 * time.Millisecond) // the sender meets the closed port
	if err := mf.smtp.Restart(); err != nil {
		t.Fatal(err)
	}
	mf.p.mail.poke()
	mf.drained(t)
	count := map[string]int{}
	for _, r := range mf.mails(t, 0) {
		count[r.to]++
	}
	if len(count) != subs {
		t.Fatalf("%d recipients, want %d", len(count), subs)
	}
	for to, n := range count {
		if n != 2 {
			t.Errorf("%s received %d messages, want 2 (one per update)", to, n)
		}
	}
}

func TestEmailBounceSuspends(t *testing.T) {
	mf := newMailFixture(t, nil) // max_failures 2
	ctx := context.Background()
	for _, a := range []string{"gone@example.org", "ok@example.org"} {
		if _, err := mf.p.AddEmailSubscriber(ctx, EmailSubscriberRequest{Email: a}); err != nil {
			t.Fatal(err)
		}
	}
	mf.smtp.Reject("gone@example.org")
	for i := range 3 {
		mf.clock.Add(time.Minute)
		if _, err := mf.p.OpenIncident(ctx, IncidentRequest{Name: fmt.Sprintf("Incident %d", i), Body: "x"}); err != nil {
			t.Fatal(err)
		}
		mf.drained(t)
	}
	if n := len(mf.smtp.Messages()); n != 3 {
		t.Errorf("accepted %d messages, want 3 (to ok@)", n)
	}
	var s EmailSubscriber
	mf.p.EmailSubscribers(ctx, "gone@example.org", func(x EmailSubscriber) error { s = x; return nil })
	if !s.Suspended || s.Failures != 2 {
		t.Errorf("gone@: suspended %v after %d failures, want suspended after 2", s.Suspended, s.Failures)
	}
	var refused int
	for _, d := range mf.p.Deliveries("email:" + s.ID) {
		if d.StatusCode == 550 {
			refused++
		}
	}
	if refused != 2 {
		t.Errorf("delivery log: %d refusals of gone@, want 2", refused)
	}
}

func TestEmailBadInput(t *testing.T) {
	mf := newMailFixture(t, nil)
	web := mf.compID("EU01/Web app")
	big := strings.Repeat("a", 9000)
	tests := []struct {
		name string
		body string
		want int
	}{
		{"malformed address", url.Values{"email": {"not-an-address"}}.Encode(), 400},
		{"no domain", url.Values{"email": {"a@b"}}.Encode(), 400},
		{"display name", url.Values{"email": {"Eve <eve@example.org>"}}.Encode(), 400},
		{"CRLF in address", url.Values{"email": {"eve@example.org\r\nBcc: all@example.org"}}.Encode(), 400},
		{"LF in address", url.Values{"email": {"eve@example.org\nX: y"}}.Encode(), 400},
		{"CRLF in component", url.Values{"email": {"eve@example.org"}, "component": {web + "\r\nBcc: x@y.z"}}.Encode(), 400},
		{"two addresses", url.Values{"email": {"a@example.org", "b@example.org"}}.Encode(), 400},
		{"list of addresses", url.Values{"email": {"a@example.org, b@example.org"}}.Encode(), 400},
		{"unknown component", url.Values{"email": {"eve@example.org"}, "component": {"nope"}}.Encode(), 400},
		{"oversized body", "email=eve@example.org&x=" + big, 413},
		{"no address", "", 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := http.Post(mf.web.URL+"/subscribe", "application/x-www-form-urlencoded", strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("got %d %s, want %d", resp.StatusCode, b, tt.want)
			}
			if strings.Contains(string(b), "eve@") || strings.Contains(string(b), "Bcc") {
				t.Errorf("input reflected: %s", b)
			}
		})
	}
	// Forged and misused tokens.
	mf.subscribeAndConfirm(t, "ana@example.org")
	var s EmailSubscriber
	mf.p.EmailSubscribers(context.Background(), "ana@example.org", func(x EmailSubscriber) error { s = x; return nil })
	manageTok, _ := mf.p.mail.token(context.Background(), purposeManage, s.ID, s.Nonce)
	for name, target := range map[string]string{
		"random confirm":             "/subscribe/confirm?id=0123456789abcdef0123456789abcdef&t=AAAA",
		"manage token as confirm":    "/subscribe/confirm?id=" + s.ID + "&t=" + manageTok,
		"hostile id":                 "/subscribe/confirm?id=../../status/state&t=x",
		"forged unsubscribe":         "/subscribe/unsubscribe?s=" + s.ID + "&t=" + strings.Repeat("A", 43),
		"unsubscribe of another sid": "/subscribe/unsubscribe?s=0123456789abcdef0123456789abcdef&t=" + manageTok,
	} {
		if code, _ := mf.post(t, mf.web.URL+target, nil); code != http.StatusNotFound {
			t.Errorf("%s: got %d, want 404", name, code)
		}
	}
	// Nothing stored by the refused requests: only ana, no pending.
	var subs []string
	mf.p.EmailSubscribers(context.Background(), "", func(x EmailSubscriber) error { subs = append(subs, x.Email); return nil })
	pend, _, _ := mf.st.List(context.Background(), keyMailPending, "", 0)
	if len(subs) != 1 || subs[0] != "ana@example.org" || len(pend) != 0 {
		t.Errorf("stored: subscribers %v, %d pending; want only ana", subs, len(pend))
	}
	// Per-address rate limit (default 3 an hour): ana subscribed once.
	codes := []int{}
	for range 3 {
		code, _ := mf.post(t, mf.web.URL+"/subscribe", url.Values{"email": {"ana@example.org"}})
		codes = append(codes, code)
	}
	if codes[0] != 200 || codes[1] != 200 || codes[2] != http.StatusTooManyRequests {
		t.Errorf("per-address limit: codes %v, want 200 200 429", codes)
	}
	if ips, addrs, limit := mf.p.SubscribeLimits(); ips != 1 || addrs < 2 || limit == 0 {
		t.Errorf("SubscribeLimits = %d %d %d", ips, addrs, limit)
	}
}

func TestEmailPendingExpires(t *testing.T) {
	mf := newMailFixture(t, nil)
	n := len(mf.smtp.Messages())
	if code, _ := mf.post(t, mf.web.URL+"/subscribe", url.Values{"email": {"late@example.org"}}); code != 200 {
		t.Fatal(code)
	}
	mf.drained(t)
	link := mf.mails(t, n)[0].link(t, "/subscribe/confirm")
	mf.clock.Add(49 * time.Hour)
	mf.p.mail.sweepPending(context.Background(), mf.clock.Now())
	pend, _, _ := mf.st.List(context.Background(), keyMailPending, "", 0)
	if len(pend) != 0 {
		t.Fatalf("%d pending after confirm_ttl, want 0", len(pend))
	}
	if code, _ := mf.post(t, link, nil); code != http.StatusNotFound {
		t.Fatalf("expired confirmation: %d, want 404", code)
	}
}

func TestEmailSubscribePageInExport(t *testing.T) {
	mf := newMailFixture(t, nil)
	files := mf.p.Files()
	form := string(files["subscribe.html"])
	if !strings.Contains(form, `action="`+mf.web.URL+`/subscribe"`) || strings.Contains(form, "<script") {
		t.Errorf("subscribe.html: %s", form)
	}
	if !strings.Contains(string(files["index.html"]), `href="subscribe.html"`) {
		t.Error("index.html does not link the subscribe page")
	}
	resp, err := http.Get(mf.web.URL + "/subscribe.html")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "form-action 'self' "+mf.web.URL) {
		t.Errorf("CSP %q does not allow posting to the public URL", csp)
	}
}

// storeKeys counts keys under prefix (for tests in other files).
func storeKeys(t *testing.T, st store.Store, prefix string) int {
	kvs, _, err := st.List(context.Background(), prefix, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	return len(kvs)
}

var _ = json.Marshal

func writeFileErr(path string, b []byte) error { return os.WriteFile(path, b, 0o600) }

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("MAILDEBUG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, nil))
}

// TestEmailParallelResume sends over four SMTP sessions while the server
// answers 451 for one address in the middle of the batch: the pass stops,
// every message accepted so far is covered by the recorded progress
// (cursor or done list), and the retry sends only what is left: each
// address receives exactly one message.
func TestEmailParallelResume(t *testing.T) {
	mf := newMailFixture(t, func(e *config.StatusEmail) { e.SMTP.Connections = 4 })
	ctx := context.Background()
	const subs = 40
	var addrs []string
	for i := range subs {
		a := fmt.Sprintf("p%02d@example.org", i)
		addrs = append(addrs, a)
		if _, err := mf.p.AddEmailSubscriber(ctx, EmailSubscriberRequest{Email: a}); err != nil {
			t.Fatal(err)
		}
	}
	slices.SortFunc(addrs, func(a, b string) int { return strings.Compare(subID(a), subID(b)) })
	busy := addrs[subs/2] // sent in the middle of the batch
	mf.smtp.TempFailRcpt(busy, true)
	if _, err := mf.p.OpenIncident(ctx, IncidentRequest{Name: "Outage", Body: "Looking."}); err != nil {
		t.Fatal(err)
	}
	var ev mailEvent
	waitFor(t, "the pass to stop with every accepted message recorded", func() bool {
		kvs, _, err := mf.st.List(ctx, keyMailEvents, "", 0)
		if err != nil || len(kvs) != 1 || json.Unmarshal(kvs[0].Value, &ev) != nil {
			return false
		}
		failed := false
		for _, d := range mf.p.Deliveries("") {
			failed = failed || (d.Channel == "email" && !d.OK)
		}
		if !failed {
			return false
		}
		for _, m := range mf.smtp.Messages() {
			sid := subID(m.To[0])
			if sid > ev.Cursor && !slices.Contains(ev.Done, sid) {
				return false
			}
		}
		return true
	})
	if got := len(mf.smtp.Messages()); got < subs/2 || got >= subs {
		t.Errorf("%d messages accepted before the pass stopped, want at least %d and not all", got, subs/2)
	}
	if ev.Cursor >= subID(busy) {
		t.Errorf("cursor %s passed the address that was not accepted (%s)", ev.Cursor, subID(busy))
	}
	t.Logf("stopped with %d accepted, cursor at %d of %d, %d done past it", len(mf.smtp.Messages()), slices.IndexFunc(addrs, func(a string) bool { return subID(a) == ev.Cursor })+1, subs, len(ev.Done))
	mf.smtp.TempFailRcpt(busy, false)
	mf.p.mail.poke()
	mf.drained(t)
	count := map[string]int{}
	for _, m := range mf.smtp.Messages() {
		count[m.To[0]]++
	}
	for _, a := range addrs {
		if count[a] != 1 {
			t.Errorf("%s received %d messages, want 1", a, count[a])
		}
	}
}

// TestEmailReload changes status.email through Reconfigure (what a reload
// calls): the next notification goes to the new SMTP server, from the new
// sender, with links under the new public URL, and the subscribe limits
// follow.
func TestEmailReload(t *testing.T) {
	mf := newMailFixture(t, nil)
	ctx := context.Background()
	if _, err := mf.p.AddEmailSubscriber(ctx, EmailSubscriberRequest{Email: "r@example.org"}); err != nil {
		t.Fatal(err)
	}
	if _, err := mf.p.OpenIncident(ctx, IncidentRequest{Name: "Before", Body: "x"}); err != nil {
		t.Fatal(err)
	}
	mf.drained(t)
	if n := len(mf.smtp.Messages()); n != 1 {
		t.Fatalf("old server: %d messages before the reload, want 1", n)
	}

	other, err := smtptest.Start(smtptest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(other.Close)
	caFile := filepath.Join(mf.dir, "other-ca.pem")
	writeFile(t, caFile, other.CAPEM)
	cfg := testStatus
	cfg.Email = &config.StatusEmail{
		SMTP: config.SMTP{Host: "127.0.0.1", Port: other.Port(), CAFile: caFile, Connections: 2},
		From: "Ops <ops@example.net>", PublicURL: "https://status.example.net/", RatePerSecond: 500,
		PerIPPerHour: 1,
	}
	mf.p.Reconfigure(cfg, nil)
	mf.clock.Add(time.Minute)
	if _, err := mf.p.OpenIncident(ctx, IncidentRequest{Name: "After", Body: "y"}); err != nil {
		t.Fatal(err)
	}
	mf.drained(t)
	if n := len(mf.smtp.Messages()); n != 1 {
		t.Errorf("old server: %d messages, want still 1", n)
	}
	msgs := other.Messages()
	if len(msgs) != 1 {
		t.Fatalf("new server: %d messages, want 1", len(msgs))
	}
	r := parseMail(t, msgs[0])
	if from := r.header.Get("From"); !strings.Contains(from, "ops@example.net") || msgs[0].From != "ops@example.net" {
		t.Errorf("From %q, envelope %q: want ops@example.net", from, msgs[0].From)
	}
	if l := r.link(t, "/subscribe/unsubscribe"); !strings.HasPrefix(l, "https://status.example.net/") {
		t.Errorf("unsubscribe link %q is not under the new public URL", l)
	}
	if id := r.header.Get("List-Id"); !strings.Contains(id, "status.example.net") {
		t.Errorf("List-Id %q", id)
	}
	// per_ip_per_hour is now 1: the second request from this client is refused.
	mf.post(t, mf.web.URL+"/subscribe", url.Values{"email": {"a1@example.org"}})
	if code, _ := mf.post(t, mf.web.URL+"/subscribe", url.Values{"email": {"a2@example.org"}}); code != http.StatusTooManyRequests {
		t.Errorf("second subscribe after the reload: %d, want 429", code)
	}
}
