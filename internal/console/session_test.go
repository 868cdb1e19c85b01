package console

import (
	"strings"
	"testing"
	"time"

	"gatehouse/internal/capacity"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }
func newClock() *clock                   { return &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func TestSessionsExpireIdleAndAbsolute(t *testing.T) {
	c := newClock()
	s := newSessions(12*time.Hour, time.Hour, 10, c.now)
	a := s.create("secret-a", "token \"a\"")
	if a.id == "" || a.csrf == "" || a.id == a.csrf {
		t.Fatalf("session id %q and csrf %q must be distinct and set", a.id, a.csrf)
	}
	c.advance(59 * time.Minute)
	if got, ok := s.get(a.id); !ok || got.token != "secret-a" {
		t.Fatalf("session used within the idle time is gone: %v %v", got, ok)
	}
	// Used every 59 minutes, it still ends 12 hours after sign-in.
	for range 11 {
		c.advance(59 * time.Minute)
		if _, ok := s.get(a.id); !ok {
			t.Fatalf("session ended early at %v", c.t)
		}
	}
	c.advance(59 * time.Minute) // 12 h 0 min after sign-in
	if _, ok := s.get(a.id); ok {
		t.Fatal("session outlived its 12 hours")
	}
	if s.len() != 0 {
		t.Fatalf("expired session kept: %d", s.len())
	}
	b := s.create("secret-b", "b")
	c.advance(time.Hour)
	if _, ok := s.get(b.id); ok {
		t.Fatal("session idle for an hour still valid")
	}
}

func TestSessionsRemoveAndBound(t *testing.T) {
	c := newClock()
	s := newSessions(0, 0, 3, c.now)
	var ids []string
	for i := range 3 {
		ids = append(ids, s.create("t", "n").id)
		c.advance(time.Duration(i+1) * time.Second)
	}
	s.get(ids[0]) // the first becomes the most recently used
	d := s.create("t", "n")
	if s.len() != 3 {
		t.Fatalf("sessions held %d, bound 3", s.len())
	}
	if _, ok := s.get(ids[1]); ok {
		t.Fatal("the least recently used session was not the one evicted")
	}
	for _, id := range []string{ids[0], ids[2], d.id} {
		if _, ok := s.get(id); !ok {
			t.Fatalf("session %s evicted wrongly", id)
		}
	}
	s.remove(d.id)
	if _, ok := s.get(d.id); ok {
		t.Fatal("removed session still valid")
	}
}

func TestCSRFCompare(t *testing.T) {
	want := randomID()
	if !csrfOK(want, want) {
		t.Fatal("the right token refused")
	}
	for _, got := range []string{"", want[:len(want)-1], want + "x", strings.ToUpper(want), randomID()} {
		if csrfOK(want, got) {
			t.Fatalf("forged token %q accepted", got)
		}
	}
	if csrfOK("", "") {
		t.Fatal("an empty expectation matched")
	}
}

func TestLimiterPerAddress(t *testing.T) {
	c := newClock()
	l := newLimiter(10, time.Minute, 2, c.now)
	for i := range 10 {
		if ok, _ := l.allow("192.0.2.1"); !ok {
			t.Fatalf("attempt %d refused", i+1)
		}
		c.advance(time.Second)
	}
	ok, wait := l.allow("192.0.2.1")
	if ok {
		t.Fatal("11th attempt within a minute allowed")
	}
	if wait <= 0 || wait > time.Minute {
		t.Fatalf("retry after %v", wait)
	}
	if ok, _ := l.allow("192.0.2.2"); !ok {
		t.Fatal("another address refused")
	}
	// The table is full (2 addresses, both in their window): a third is refused.
	if ok, _ := l.allow("192.0.2.3"); ok {
		t.Fatal("the table grew past its bound")
	}
	c.advance(wait)
	if ok, _ := l.allow("192.0.2.1"); !ok {
		t.Fatal("attempt after the window refused")
	}
	c.advance(2 * time.Minute)
	if ok, _ := l.allow("192.0.2.3"); !ok {
		t.Fatal("new address refused once old windows passed")
	}
}

func TestHistoryRingBound(t *testing.T) {
	h := NewHistory(1440)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 1500 {
		h.Add(t0.Add(time.Duration(i)*time.Minute), []capacity.Resource{{Name: "certificates", Usage: int64(i), Limit: 10000}})
	}
	if h.Len() != 1440 {
		t.Fatalf("samples held %d, want 1440", h.Len())
	}
	s := h.series("certificates")
	if len(s) != 1440 || s[0].usage != 60 || s[len(s)-1].usage != 1499 {
		t.Fatalf("series: %d points, first %v, last %v; want 1440 from 60 to 1499", len(s), s[0], s[len(s)-1])
	}
	if got := h.series("unknown"); len(got) != 0 {
		t.Fatalf("unknown resource has %d points", len(got))
	}
}
