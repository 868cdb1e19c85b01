package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/mail"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"gatehouse/internal/admin"
	"gatehouse/internal/browsertest"
	"gatehouse/internal/config"
	"gatehouse/internal/demo"
	"gatehouse/internal/mailer/smtptest"
	"gatehouse/internal/node"
	"gatehouse/internal/status"
)

// startMailNode starts a node whose status listener is on a port chosen
// up front, so that status.email.public_url (the links in emails and the
// subscribe form's target) is the node's own portal.
func startMailNode(t *testing.T, srv *smtptest.Server) (*testNode, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	statusAddr := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	caFile := filepath.Join(dir, "smtp-ca.pem")
	os.WriteFile(caFile, srv.CAPEM, 0o600)
	os.WriteFile(filepath.Join(dir, "smtp.pw"), []byte("s3cret\n"), 0o600)
	a := backend(t, "a1")
	doc := fmt.Sprintf(`data_dir: %s
listeners:
  https: {address: "127.0.0.1:0"}
  http: {address: "127.0.0.1:0"}
  status: {address: %q}
  admin: {address: "127.0.0.1:0"}
pools:
  - name: web
    members: [{address: %q}]
  - name: mobile
    members: [{address: %q}]
routes:
  - {host: app.uni-a.test, pool: web}
status:
  title: University services
  components:
    - {name: Web app, region: EU01, pools: [web]}
    - {name: Mobile app, region: EU01, pools: [mobile]}
  email:
    smtp: {host: 127.0.0.1, port: %d, username: status, password_file: %s, ca_file: %s}
    from: "University status <status@uni-a.test>"
    public_url: http://%s/
    rate_per_second: 200
`, dir, statusAddr, addrOf(a), addrOf(a), srv.Port(), filepath.Join(dir, "smtp.pw"), caFile, statusAddr)
	path := filepath.Join(dir, "gatehouse.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	ca, err := demo.LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	n, err := node.New(ctx, cfg, node.Options{Logger: log, Reload: func() (*config.Config, error) { return config.Load(path) }})
	if err != nil {
		cancel()
		t.Fatalf("startNode: %v", err)
	}
	tn := &testNode{Node: n, t: t, cfg: cfg, cfgPath: path, ca: ca, cancel: cancel, done: make(chan error, 1)}
	go func() { tn.done <- n.Run(ctx) }()
	t.Cleanup(tn.stop)
	tok, err := os.ReadFile(filepath.Join(dir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	adminCA, _ := os.ReadFile(filepath.Join(dir, "admin.crt"))
	tn.client, err = admin.NewClient("https://"+n.Addr("admin"), strings.TrimSpace(string(tok)), adminCA)
	if err != nil {
		t.Fatal(err)
	}
	tn.roots = x509.NewCertPool()
	tn.roots.AddCert(ca.Cert)
	return tn, "http://" + statusAddr + "/"
}

type gotMail struct {
	to, text string
	header   mail.Header
}

var mailLink = regexp.MustCompile(`https?://[^\s"<>]+`)

func (g gotMail) link(t *testing.T, part string) string {
	t.Helper()
	for _, l := range mailLink.FindAllString(g.text, -1) {
		if strings.Contains(l, part) {
			return l
		}
	}
	t.Fatalf("no %s link in %q", part, g.text)
	return ""
}

func readMails(t *testing.T, srv *smtptest.Server, from int) []gotMail {
	t.Helper()
	var out []gotMail
	for _, m := range srv.Messages()[from:] {
		msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
		if err != nil {
			t.Fatal(err)
		}
		_, params, _ := mime.ParseMediaType(msg.Header.Get("Content-Type"))
		mr := multipart.NewReader(msg.Body, params["boundary"])
		g := gotMail{to: strings.Join(m.To, ","), header: msg.Header}
		for {
			p, err := mr.NextPart()
			if err != nil {
				break
			}
			b, _ := io.ReadAll(p)
			if strings.HasPrefix(p.Header.Get("Content-Type"), "text/plain") {
				g.text = string(b)
			}
		}
		out = append(out, g)
	}
	return out
}

// waitBatches waits until the delivery log holds n email batches.
func waitBatches(t *testing.T, c *admin.Client, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		list, err := c.StatusDeliveries(context.Background(), "")
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for _, d := range list {
			if d.Channel == "email" && d.Subscriber == "email" {
				got++
			}
		}
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d email batches in the delivery log, want %d", got, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestStatusEmailInBrowser: a person subscribes from the portal in
// headless Chromium, confirms with the link of the email the node sent
// through a real SMTP server, receives exactly one email when an incident
// on the followed component is published (the unconfirmed address and
// the one following another component get none), and unsubscribes.
func TestStatusEmailInBrowser(t *testing.T) {
	bctx := browsertest.New(t)
	srv, err := smtptest.Start(smtptest.Options{Username: "status", Password: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	tn, base := startMailNode(t, srv)
	ctx, cancel := context.WithTimeout(bctx, 60*time.Second)
	defer cancel()

	// Subscribe from the page, following the web app only.
	if err := chromedp.Do(ctx, chromedp.Navigate(base)); err != nil {
		t.Fatal(err)
	}
	click := func(sel chromedp.ID) {
		t.Helper()
		if _, err := chromedp.Run(ctx, chromedp.WaitEvent(page.LoadEventFired, nil, chromedp.Click(sel))); err != nil {
			t.Fatalf("clicking: %v", err)
		}
	}
	click(chromedp.ID("subscribe-link"))
	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.ID("email"), "ana@uni-a.test"),
		chromedp.Click(chromedp.CSS(`input[name="component"]`))); err != nil { // the first: EU01 / Web app
		t.Fatalf("filling the form: %v", err)
	}
	click(chromedp.ID("subscribe-button"))
	heading, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#sub-heading")))
	if err != nil || heading != "Check your inbox" {
		t.Fatalf("after subscribing: %q %v", heading, err)
	}
	if !srv.Wait(1, 20*time.Second) {
		t.Fatal("no confirmation email")
	}
	conf := readMails(t, srv, 0)[0]
	if conf.to != "ana@uni-a.test" {
		t.Fatalf("confirmation to %q", conf.to)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(conf.link(t, "/subscribe/confirm"))); err != nil {
		t.Fatal(err)
	}
	click(chromedp.ID("sub-button"))
	if heading, _ = chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#sub-heading"))); heading != "Subscription confirmed" {
		t.Fatalf("confirmation page: %q", heading)
	}
	browsertest.Screenshot(t, bctx, "status-email-confirmed")

	// Others: bo (confirmed by the operator through the CLI) follows the
	// mobile app; cy asked but never confirmed.
	if out, err := statusCLI(t, tn, "status", "subscribers", "add", "--email", "bo@uni-a.test", "--component", "EU01/Mobile app"); err != nil {
		t.Fatalf("subscribers add --email: %v\n%s", err, out)
	}
	resp, err := http.PostForm(base+"subscribe", url.Values{"email": {"cy@uni-a.test"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if !srv.Wait(2, 20*time.Second) { // cy's confirmation
		t.Fatal("no confirmation for cy")
	}
	n := len(srv.Messages())

	in, err := tn.client.OpenIncident(context.Background(), status.IncidentRequest{Name: "Grades unavailable", Body: "Investigating.",
		Components: []string{"EU01/Web app"}})
	if err != nil {
		t.Fatal(err)
	}
	waitBatches(t, tn.client, 1)
	got := readMails(t, srv, n)
	if len(got) != 1 || got[0].to != "ana@uni-a.test" {
		t.Fatalf("incident on the web app: %d emails %v, want exactly one, to ana", len(got), got)
	}
	if !strings.Contains(got[0].text, base+"incidents/"+in.ID+".html") {
		t.Errorf("email lacks the incident's link: %q", got[0].text)
	}

	// Unsubscribe with the page's button.
	if err := chromedp.Do(ctx, chromedp.Navigate(got[0].link(t, "/subscribe/unsubscribe"))); err != nil {
		t.Fatal(err)
	}
	click(chromedp.ID("sub-button"))
	if heading, _ = chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#sub-heading"))); heading != "Unsubscribed" {
		t.Fatalf("unsubscribe page: %q", heading)
	}
	n = len(srv.Messages())
	if _, err := tn.client.UpdateIncident(context.Background(), in.ID, status.UpdateRequest{Status: "resolved", Body: "Fixed."}); err != nil {
		t.Fatal(err)
	}
	waitBatches(t, tn.client, 2)
	if got := readMails(t, srv, n); len(got) != 0 {
		t.Fatalf("after unsubscribing: %d emails, first to %s", len(got), got[0].to)
	}

	// Operators: list, export, import with per-line errors, rm.
	out, err := statusCLI(t, tn, "status", "subscribers", "list", "--email")
	if err != nil || !strings.Contains(out, "bo@uni-a.test") || strings.Contains(out, "ana@") || strings.Contains(out, "cy@") {
		t.Errorf("list --email: %v\n%s", err, out)
	}
	imp := filepath.Join(t.TempDir(), "subs.csv")
	os.WriteFile(imp, []byte("email,components\ndee@uni-a.test,EU01/Web app\nnot-an-address\neve@uni-a.test,Nowhere\nfay@uni-a.test\n"), 0o600)
	out, err = statusCLI(t, tn, "status", "subscribers", "import", imp)
	if err == nil || !strings.Contains(out, "line 3: email:") || !strings.Contains(out, `line 4: component[0]: "Nowhere"`) || !strings.Contains(out, "2 email subscribers added, 2 lines refused") {
		t.Errorf("import: %v\n%s", err, out)
	}
	out, err = statusCLI(t, tn, "status", "subscribers", "export")
	if err != nil || strings.Count(out, "\n") != 4 || !strings.Contains(out, "dee@uni-a.test,") || !strings.Contains(out, "fay@uni-a.test,,confirmed,0,") {
		t.Errorf("export: %v\n%s", err, out)
	}
	if out, err := statusCLI(t, tn, "status", "subscribers", "rm", "--email", "fay@uni-a.test"); err != nil {
		t.Errorf("rm --email: %v\n%s", err, out)
	}
	if out, err := statusCLI(t, tn, "status", "subscribers", "list", "--email", "fay@uni-a.test"); err == nil {
		t.Errorf("list of a removed address: %s", out)
	}
	out, err = statusCLI(t, tn, "limits")
	if err == nil && !strings.Contains(out, "status_subscribe_clients") {
		t.Errorf("limits lack the subscribe rate-limit tables:\n%s", out)
	}
}
