package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"gatehouse/internal/browsertest"
)

// TestConsoleInBrowser signs in to the console of a real node in headless
// Chromium with the bootstrap token, sees the capacity table with an SVG
// chart per resource and the certificates by expiry, has a forged CSRF
// token refused with 403, signs out and is shown the sign-in page again;
// a wrong token is refused; a read-scope token sees the overview.
func TestConsoleInBrowser(t *testing.T) {
	tn, _ := webAppNode(t)
	tn.addCert("www.uni-a.test")
	// A change, for the last-changes table.
	if _, err := tn.client.AddToken(context.Background(), "viewer", []string{"read"}); err != nil {
		t.Fatal(err)
	}
	viewer, err := tn.client.AddToken(context.Background(), "viewer2", []string{"read"})
	if err != nil {
		t.Fatal(err)
	}
	bootstrap, err := os.ReadFile(filepath.Join(filepath.Dir(tn.cfgPath), "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	base := "https://" + tn.Addr("admin") + "/console/"

	bctx := browsertest.New(t, chromedp.Flag("ignore-certificate-errors", true))
	ctx, cancel := context.WithTimeout(bctx, 60*time.Second)
	defer cancel()
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("reading %s: %v", sel, err)
		}
		return s
	}
	submit := func(sel string) int64 {
		t.Helper()
		resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("submitting %s: %v", sel, err)
		}
		return resp.Status
	}
	signIn := func(token string) int64 {
		t.Helper()
		if err := chromedp.Do(ctx, chromedp.Navigate(base), chromedp.SendKeys(chromedp.ID("token"), token)); err != nil {
			t.Fatalf("sign-in page: %v", err)
		}
		return submit("#signin")
	}

	// A wrong token: refused, the form is shown again.
	if code := signIn("not-a-token-0123456789"); code != http.StatusUnauthorized || !strings.Contains(text(".error"), "not valid") {
		t.Fatalf("wrong token: status %d", code)
	}

	if code := signIn(strings.TrimSpace(string(bootstrap))); code != http.StatusOK {
		t.Fatalf("sign-in with the bootstrap token: status %d", code)
	}
	table := text("#capacity")
	for _, want := range []string{"certificates", "routes", "audit_records"} {
		if !strings.Contains(table, want) {
			t.Fatalf("capacity table lacks %q:\n%s", want, table)
		}
	}
	charts, err := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("#capacity tbody")))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(charts, "<svg"); n < 3 || n != strings.Count(charts, "<tr") {
		t.Fatalf("want one SVG chart per resource row, got %d charts in %d rows", n, strings.Count(charts, "<tr"))
	}
	if !regexp.MustCompile(`<circle|<polyline`).MatchString(charts) {
		t.Fatalf("charts are empty: the first sample is taken at start\n%s", charts)
	}
	if got := text("#certs"); !regexp.MustCompile(`valid \(more than 30 days left\)\s+1`).MatchString(got) {
		t.Fatalf("certificates by expiry: %q, want one valid", got)
	}
	if got := text("#audit"); !strings.Contains(got, "tokens/viewer") {
		t.Fatalf("last changes lack the token added: %q", got)
	}
	browsertest.Screenshot(t, ctx, "console-overview")

	// A forged CSRF token on the sign-out form: 403, the session survives.
	if err := chromedp.Do(ctx, chromedp.SetValue(chromedp.CSS(`input[name="csrf"]`), "forged")); err != nil {
		t.Fatal(err)
	}
	if code := submit("#signout"); code != http.StatusForbidden {
		t.Fatalf("sign-out with a forged CSRF token: status %d, want 403", code)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(base)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text("header"), "signed in") {
		t.Fatal("the session ended after a forged form")
	}
	if code := submit("#signout"); code != http.StatusOK {
		t.Fatalf("sign-out: status %d", code)
	}
	if _, err := chromedp.Run(ctx, chromedp.WaitEvent(page.LoadEventFired, nil, chromedp.Navigate(base))); err != nil {
		t.Fatal(err)
	}
	if got := text("h1"); got != "Gatehouse console" {
		t.Fatalf("after sign-out: %q", got)
	}
	if _, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("signin"))); err != nil {
		t.Fatalf("after sign-out the sign-in form is not shown: %v", err)
	}

	// A read-scope token sees the overview.
	if code := signIn(viewer.Secret); code != http.StatusOK || !strings.Contains(text("header"), `"viewer2" (read)`) {
		t.Fatalf("read token: status %d, header %q", code, text("header"))
	}
	if !strings.Contains(text("#capacity"), "certificates") {
		t.Fatal("read token does not see the capacity table")
	}

	// Hostname search: 60 names of one prefix, paged 50 then 10 by the server.
	var shop []string
	for i := range 60 {
		shop = append(shop, fmt.Sprintf("p%02d.shop.test", i))
	}
	tn.addCert(shop...)
	if _, err := chromedp.Run(ctx, chromedp.WaitEvent(page.LoadEventFired, nil, chromedp.Click(chromedp.ID("hostnames-link")))); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.ID("prefix"), "P")); err != nil {
		t.Fatal(err)
	}
	if code := submit("#search"); code != http.StatusOK {
		t.Fatalf("search: status %d", code)
	}
	rows := func() []string {
		t.Helper()
		html, err := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("#names tbody")))
		if err != nil {
			t.Fatal(err)
		}
		return regexp.MustCompile(`p\d\d\.shop\.test`).FindAllString(html, -1)
	}
	first := rows()
	if len(first) != 50 || first[0] != "p00.shop.test" || first[49] != "p49.shop.test" {
		t.Fatalf("first page: %d names %v", len(first), first)
	}
	browsertest.Screenshot(t, ctx, "console-hostnames")
	if code := submit("#next"); code != http.StatusOK {
		t.Fatalf("next page: status %d", code)
	}
	second := rows()
	if len(second) != 10 || second[0] != "p50.shop.test" || second[9] != "p59.shop.test" {
		t.Fatalf("second page: %d names %v", len(second), second)
	}
	if main, err := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("main"))); err != nil || strings.Contains(main, `id="next"`) {
		t.Fatalf("a next link on the last page (%v)", err)
	}
	resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(base+"hostnames?prefix=a%2Fb"))
	if err != nil || resp.Status != http.StatusBadRequest || !strings.Contains(text(".error"), "prefix:") {
		t.Fatalf("bad prefix: %v %v", err, resp)
	}
}

// TestConsoleSessionCookie checks the console over plain HTTP from Go: the
// cookie's attributes, the policy header, an old cookie after sign-out, a
// revoked token ending its session, and the sign-in rate limit.
func TestConsoleSessionCookie(t *testing.T) {
	tn, _ := webAppNode(t)
	dir := filepath.Dir(tn.cfgPath)
	adminCA, _ := os.ReadFile(filepath.Join(dir, "admin.crt"))
	base := "https://" + tn.Addr("admin") + "/console/"
	tok, err := tn.client.AddToken(context.Background(), "ops", []string{"read"})
	if err != nil {
		t.Fatal(err)
	}
	csrfRE := regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	newClient := func() *http.Client {
		c := tn.adminHTTP(adminCA)
		c.Jar, _ = cookiejar.New(nil)
		return c
	}
	get := func(c *http.Client) (int, string, http.Header) {
		t.Helper()
		resp, err := c.Get(base)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		if _, err := io.Copy(&b, resp.Body); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, b.String(), resp.Header
	}
	post := func(c *http.Client, path string, form url.Values) (*http.Response, string) {
		t.Helper()
		resp, err := c.PostForm(strings.TrimSuffix(base, "/console/")+path, form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		io.Copy(&b, resp.Body)
		return resp, b.String()
	}
	signIn := func(c *http.Client, token string) (*http.Response, string) {
		_, body, _ := get(c)
		m := csrfRE.FindStringSubmatch(body)
		if m == nil {
			t.Fatalf("sign-in page without a CSRF field:\n%s", body)
		}
		return post(c, "/console/signin", url.Values{"csrf": {m[1]}, "token": {token}})
	}

	c := newClient()
	code, _, h := get(c)
	if code != http.StatusOK || !strings.Contains(h.Get("Content-Security-Policy"), "default-src 'none'") || !strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
		t.Fatalf("sign-in page: %d, policy %q", code, h.Get("Content-Security-Policy"))
	}
	// Without the sign-in cookie's pair, the form is refused.
	if resp, _ := post(tn.adminHTTP(adminCA), "/console/signin", url.Values{"csrf": {"x"}, "token": {tok.Secret}}); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("sign-in without the CSRF pair: %d, want 403", resp.StatusCode)
	}
	// The bearer API is not opened by a console session, nor the console by a bearer header.
	resp, body := signIn(c, tok.Secret)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `id="capacity"`) {
		t.Fatalf("sign-in: %d\n%s", resp.StatusCode, body)
	}
	u, _ := url.Parse(base)
	var session *http.Cookie
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == "gatehouse_console" {
			session = ck
		}
	}
	if session == nil {
		t.Fatal("no session cookie")
	}
	setCookie := resp.Request.Response.Header.Values("Set-Cookie")
	var attrs string
	for _, v := range setCookie {
		if strings.HasPrefix(v, "gatehouse_console=") {
			attrs = v
		}
	}
	for _, want := range []string{"Path=/console/", "HttpOnly", "Secure", "SameSite=Strict"} {
		if !strings.Contains(attrs, want) {
			t.Fatalf("session cookie %q lacks %s", attrs, want)
		}
	}
	// Sign out; the old cookie, replayed, gets the sign-in page.
	m := csrfRE.FindStringSubmatch(body)
	if resp, _ := post(c, "/console/signout", url.Values{"csrf": {m[1]}}); resp.StatusCode != http.StatusOK {
		t.Fatalf("sign-out: %d", resp.StatusCode)
	}
	old := newClient()
	old.Jar.SetCookies(u, []*http.Cookie{{Name: "gatehouse_console", Value: session.Value, Path: "/console/"}})
	if _, body, _ := get(old); !strings.Contains(body, `id="signin"`) || strings.Contains(body, `id="capacity"`) {
		t.Fatalf("the old cookie after sign-out still opens the console:\n%s", body)
	}

	// A revoked token ends its session at the next request.
	c2 := newClient()
	if resp, _ := signIn(c2, tok.Secret); resp.StatusCode != http.StatusOK {
		t.Fatalf("sign-in: %d", resp.StatusCode)
	}
	if err := tn.client.RemoveToken(context.Background(), "ops"); err != nil {
		t.Fatal(err)
	}
	if _, body, _ := get(c2); !strings.Contains(body, `id="signin"`) {
		t.Fatal("a revoked token's session still opens the console")
	}

	// A token without the read scope cannot sign in.
	st, err := tn.client.AddToken(context.Background(), "writer", []string{"status"})
	if err != nil {
		t.Fatal(err)
	}
	if resp, body := signIn(newClient(), st.Secret); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "read scope") {
		t.Fatalf("status-only token: %d", resp.StatusCode)
	}

	// Sign-in attempts are limited per address: within a minute, the 11th
	// of this address (4 made above, the next 6 pass the limiter) is refused.
	c3 := newClient()
	var last int
	for range 8 {
		resp, _ := signIn(c3, "wrong-token-0123456789")
		last = resp.StatusCode
	}
	if last != http.StatusTooManyRequests {
		t.Fatalf("the 12th sign-in attempt within a minute: %d, want 429", last)
	}
}
