// Package mailer builds MIME email messages and hands them to an SMTP
// server. Messages are multipart/alternative (plain text and HTML, both
// quoted-printable), with the headers a mass mailing needs to be accepted
// and unsubscribed from in one click (RFC 8058). Sending uses net/smtp over
// TLS (implicit, or STARTTLS that the server must offer) and authenticates
// only inside TLS.
package mailer

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"strings"
	"time"
)

// Message is one email to one recipient.
type Message struct {
	From    string // "Name <addr>" or "addr"
	To      string // one address
	Subject string // may be non-ASCII
	Text    string // the plain-text part
	HTML    string // the HTML part (already safe HTML)
	Date    time.Time
	// MessageID is the Message-ID without angle brackets; empty: a random
	// one at the sender's domain.
	MessageID string
	// Unsubscribe, if set, is the one-click unsubscribe URL
	// (List-Unsubscribe and List-Unsubscribe-Post, RFC 8058).
	Unsubscribe string
	// ListID, if set, identifies the list (List-Id, RFC 2919).
	ListID string
}

// ErrHeaderInjection is returned for a header field holding CR or LF.
var ErrHeaderInjection = errors.New("mailer: header field contains a line break")

// maxLine is the longest header line written before folding (RFC 5322
// recommends 78 characters).
const maxLine = 78

// CheckAddress parses one bare address (no display name, no line breaks,
// at most 254 bytes) and returns it as the server will see it.
func CheckAddress(s string) (string, error) {
	if strings.ContainsAny(s, "\r\n\x00") {
		return "", ErrHeaderInjection
	}
	if len(s) > 254 {
		return "", fmt.Errorf("address of %d bytes is longer than 254", len(s))
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Name != "" || a.Address != strings.TrimSpace(s) {
		return "", fmt.Errorf("%q is not a plain email address", s)
	}
	at := strings.LastIndexByte(a.Address, '@')
	if at <= 0 || at == len(a.Address)-1 || !strings.Contains(a.Address[at+1:], ".") ||
		strings.ContainsAny(a.Address, " <>\"(),;:\\[]") {
		return "", fmt.Errorf("%q is not a deliverable email address (user@domain.tld)", s)
	}
	return a.Address, nil
}

// Bytes renders the message in wire format (CRLF line ends).
func (m Message) Bytes() ([]byte, error) {
	for _, v := range []string{m.From, m.To, m.Subject, m.MessageID, m.Unsubscribe, m.ListID} {
		if strings.ContainsAny(v, "\r\n") {
			return nil, ErrHeaderInjection
		}
	}
	from, err := mail.ParseAddress(m.From)
	if err != nil {
		return nil, fmt.Errorf("mailer: from %q: %w", m.From, err)
	}
	to, err := CheckAddress(m.To)
	if err != nil {
		return nil, fmt.Errorf("mailer: to: %w", err)
	}
	id := m.MessageID
	if id == "" {
		id = NewMessageID(from.Address)
	}
	date := m.Date
	if date.IsZero() {
		date = time.Now()
	}
	var b bytes.Buffer
	header := func(k, v string) {
		b.WriteString(fold(k + ": " + v))
		b.WriteString("\r\n")
	}
	header("From", from.String())
	header("To", (&mail.Address{Address: to}).String())
	header("Subject", mime.QEncoding.Encode("utf-8", m.Subject))
	header("Date", date.Format(time.RFC1123Z))
	header("Message-ID", "<"+id+">")
	header("MIME-Version", "1.0")
	header("Auto-Submitted", "auto-generated")
	if m.ListID != "" {
		header("List-Id", "<"+m.ListID+">")
	}
	if m.Unsubscribe != "" {
		header("List-Unsubscribe", "<"+m.Unsubscribe+">")
		header("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	header("Content-Type", mime.FormatMediaType("multipart/alternative", map[string]string{"boundary": mw.Boundary()}))
	b.WriteString("\r\n")
	for _, part := range []struct{ typ, content string }{{"text/plain", m.Text}, {"text/html", m.HTML}} {
		w, err := mw.CreatePart(textproto.MIMEHeader{
			"Content-Type":              {part.typ + "; charset=utf-8"},
			"Content-Transfer-Encoding": {"quoted-printable"},
		})
		if err != nil {
			return nil, err
		}
		qp := quotedprintable.NewWriter(w)
		if _, err := qp.Write([]byte(crlf(part.content))); err != nil {
			return nil, err
		}
		if err := qp.Close(); err != nil {
			return nil, err
		}
	}
	if err := mw.Close(); err != nil {
		return nil, err
	}
	b.Write(body.Bytes())
	return b.Bytes(), nil
}

// crlf turns every line end into CRLF.
func crlf(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	return strings.ReplaceAll(s, "\n", "\r\n")
}

// fold breaks a header line at spaces so no line exceeds maxLine where
// possible (encoded words are at most 75 characters).
func fold(line string) string {
	if len(line) <= maxLine {
		return line
	}
	var out strings.Builder
	cur := 0
	for i, word := range strings.Split(line, " ") {
		if i > 0 {
			if cur+1+len(word) > maxLine {
				out.WriteString("\r\n ")
				cur = 1
			} else {
				out.WriteByte(' ')
				cur++
			}
		}
		out.WriteString(word)
		cur += len(word)
	}
	return out.String()
}

// NewMessageID returns a random Message-ID (without brackets) at the
// domain of addr.
func NewMessageID(addr string) string {
	domain := "localhost"
	if at := strings.LastIndexByte(addr, '@'); at >= 0 && at < len(addr)-1 {
		domain = addr[at+1:]
	}
	var r [16]byte
	rand.Read(r[:])
	return hex.EncodeToString(r[:]) + "@" + domain
}
