package mailer_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"strings"
	"testing"
	"time"

	"gatehouse/internal/mailer"
	"gatehouse/internal/mailer/smtptest"
)

func testMessage() mailer.Message {
	return mailer.Message{
		From: "Status <status@example.com>", To: "reader@example.org",
		Subject: "Störung: API – investigating a very long subject line that has to be folded somewhere sensible",
		Text:    "Hello\n\nA line that is long enough to need a soft line break in quoted-printable encoding because it exceeds seventy-six characters.\n",
		HTML:    "<p>Hello &lt;b&gt;</p>",
		Date:    time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC), Unsubscribe: "https://status.example.com/subscribe/unsubscribe?s=a&t=b",
		ListID: "status.example.com",
	}
}

// parse reads a message and returns its header and its text and HTML parts.
func parse(t *testing.T, data []byte) (mail.Header, string, string) {
	t.Helper()
	for i, line := range strings.Split(string(data), "\r\n") {
		if len(line) > 78 {
			t.Errorf("line %d is %d characters long: %q", i, len(line), line)
		}
	}
	m, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/alternative" {
		t.Fatalf("content type %q: %v", mt, err)
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	parts := map[string]string{}
	for {
		p, err := mr.NextPart() // decodes quoted-printable
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(p)
		ct, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		parts[ct] = string(b)
	}
	return m.Header, parts["text/plain"], parts["text/html"]
}

func TestMessageBytes(t *testing.T) {
	msg := testMessage()
	b, err := msg.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	h, text, html := parse(t, b)
	dec := new(mime.WordDecoder)
	subj, err := dec.DecodeHeader(h.Get("Subject"))
	if err != nil || subj != msg.Subject {
		t.Errorf("subject = %q (%v), want %q", subj, err, msg.Subject)
	}
	if got := h.Get("List-Unsubscribe"); got != "<"+msg.Unsubscribe+">" {
		t.Errorf("List-Unsubscribe = %q", got)
	}
	if got := h.Get("List-Unsubscribe-Post"); got != "List-Unsubscribe=One-Click" {
		t.Errorf("List-Unsubscribe-Post = %q", got)
	}
	if id := h.Get("Message-ID"); !strings.HasPrefix(id, "<") || !strings.HasSuffix(id, "@example.com>") {
		t.Errorf("Message-ID = %q", id)
	}
	if d, err := h.Date(); err != nil || !d.Equal(msg.Date) {
		t.Errorf("Date = %v (%v)", d, err)
	}
	if want := strings.ReplaceAll(msg.Text, "\n", "\r\n"); text != want {
		t.Errorf("text = %q, want %q", text, want)
	}
	if html != msg.HTML {
		t.Errorf("html = %q", html)
	}
}

func TestMessageRefusesInjection(t *testing.T) {
	for name, mod := range map[string]func(*mailer.Message){
		"subject": func(m *mailer.Message) { m.Subject = "hi\r\nBcc: x@example.com" },
		"to":      func(m *mailer.Message) { m.To = "a@example.com\nBcc: x@example.com" },
		"from":    func(m *mailer.Message) { m.From = "a@example.com\rX: y" },
		"unsub":   func(m *mailer.Message) { m.Unsubscribe = "https://x/\r\nX: y" },
	} {
		m := testMessage()
		mod(&m)
		if _, err := m.Bytes(); !errors.Is(err, mailer.ErrHeaderInjection) {
			t.Errorf("%s: got %v, want ErrHeaderInjection", name, err)
		}
	}
}

func TestCheckAddress(t *testing.T) {
	for _, bad := range []string{"", "plain", "a@b", "A <a@b.c>", "a@b.c\r\nBcc: d@e.f", "a@b.c, d@e.f", strings.Repeat("a", 250) + "@b.cd", "a b@c.d"} {
		if _, err := mailer.CheckAddress(bad); err == nil {
			t.Errorf("CheckAddress(%q) accepted", bad)
		}
	}
	if got, err := mailer.CheckAddress("reader@example.org"); err != nil || got != "reader@example.org" {
		t.Errorf("good address: %q %v", got, err)
	}
}

func TestSend(t *testing.T) {
	for _, implicit := range []bool{false, true} {
		srv, err := smtptest.Start(smtptest.Options{Implicit: implicit, Username: "u", Password: "p"})
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		mode := mailer.StartTLS
		if implicit {
			mode = mailer.Implicit
		}
		cl := mailer.New(mailer.Config{Host: "127.0.0.1", Port: srv.Port(), TLS: mode, Username: "u", Password: "p", RootCAs: srv.CAPool})
		msg := testMessage()
		b, _ := msg.Bytes()
		for range 2 { // the second reuses the session
			if err := cl.Send(context.Background(), "status@example.com", msg.To, b); err != nil {
				t.Fatalf("%s: %v", mode, err)
			}
		}
		srv.Reject("gone@example.org")
		err = cl.Send(context.Background(), "status@example.com", "gone@example.org", b)
		var pe *mailer.PermanentError
		if !errors.As(err, &pe) || pe.Code != 550 {
			t.Errorf("%s: rejected recipient: got %v, want a 550 PermanentError", mode, err)
		}
		srv.TempFail(true)
		if err := cl.Send(context.Background(), "status@example.com", msg.To, b); err == nil || mailer.IsPermanent(err) {
			t.Errorf("%s: 451: got %v, want a temporary error", mode, err)
		}
		srv.TempFail(false)
		if err := cl.Send(context.Background(), "status@example.com", msg.To, b); err != nil {
			t.Errorf("%s: after 451: %v", mode, err)
		}
		cl.Close()
		msgs := srv.Messages()
		if len(msgs) != 3 {
			t.Fatalf("%s: server accepted %d messages, want 3", mode, len(msgs))
		}
		h, text, _ := parse(t, msgs[0].Data)
		if h.Get("To") != "<reader@example.org>" || !strings.Contains(text, "Hello") {
			t.Errorf("%s: received To %q text %q", mode, h.Get("To"), text)
		}
	}
}

func TestSendRefusesUntrustedServer(t *testing.T) {
	srv, err := smtptest.Start(smtptest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cl := mailer.New(mailer.Config{Host: "127.0.0.1", Port: srv.Port()}) // system roots: the test CA is unknown
	b, _ := testMessage().Bytes()
	if err := cl.Send(context.Background(), "status@example.com", "reader@example.org", b); err == nil {
		t.Fatal("sent to a server whose certificate is not trusted")
	}
	if srv.Count() != 0 {
		t.Fatal("the server accepted a message")
	}
}

func TestSendServerDown(t *testing.T) {
	srv, err := smtptest.Start(smtptest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cl := mailer.New(mailer.Config{Host: "127.0.0.1", Port: srv.Port(), RootCAs: srv.CAPool, Timeout: 2 * time.Second})
	b, _ := testMessage().Bytes()
	srv.Stop()
	if err := cl.Send(context.Background(), "status@example.com", "reader@example.org", b); err == nil || mailer.IsPermanent(err) {
		t.Fatalf("server down: got %v, want a temporary error", err)
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := cl.Send(context.Background(), "status@example.com", "reader@example.org", b); err != nil {
		t.Fatalf("after restart: %v", err)
	}
	cl.Close()
}
