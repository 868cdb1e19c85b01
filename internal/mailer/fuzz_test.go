package mailer_test

import (
	"bytes"
	"net/mail"
	"strings"
	"testing"
)

// FuzzMessage: whatever the recipient and subject, a message either is
// refused or parses back with exactly its own headers (no injection).
func FuzzMessage(f *testing.F) {
	f.Add("reader@example.org", "Hello")
	f.Add("a@b.c\r\nBcc: x@y.z", "subject\nX-Injected: 1")
	f.Add("\"quoted local\"@example.org", "Überlast – ☃")
	f.Fuzz(func(t *testing.T, to, subject string) {
		m := testMessage()
		m.To, m.Subject = to, subject
		b, err := m.Bytes()
		if err != nil {
			return
		}
		msg, err := mail.ReadMessage(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("built message does not parse: %v", err)
		}
		for k := range msg.Header {
			switch k {
			case "From", "To", "Subject", "Date", "Message-Id", "Mime-Version", "Auto-Submitted", "List-Id",
				"List-Unsubscribe", "List-Unsubscribe-Post", "Content-Type":
			default:
				t.Fatalf("unexpected header %q from to=%q subject=%q", k, to, subject)
			}
		}
		if got, _ := msg.Header.AddressList("To"); len(got) != 1 || !strings.EqualFold(got[0].Address, strings.TrimSpace(to)) {
			t.Fatalf("To = %v, want %q", got, to)
		}
	})
}
