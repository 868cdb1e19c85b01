package console

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"sync"
	"time"
)

// Session bounds, by default.
const (
	DefaultSessionTTL  = 12 * time.Hour // from sign-in, whatever the use
	DefaultSessionIdle = time.Hour      // since the last request
	DefaultMaxSessions = 1000           // per node; the least recently used goes first
)

// session is one signed-in browser. The token is kept in this node's memory
// only, to re-check it against the store on every request; it is never
// written anywhere.
type session struct {
	id       string
	token    string
	name     string // the token's name, as the audit trail shows it
	csrf     string
	created  time.Time
	lastSeen time.Time
}

// sessions is the bounded in-memory table of one node's console sessions.
// A node's restart ends them; in a fleet each node signs its own in.
type sessions struct {
	mu        sync.Mutex
	m         map[string]*session
	ttl, idle time.Duration
	max       int
	now       func() time.Time
}

func newSessions(ttl, idle time.Duration, max int, now func() time.Time) *sessions {
	if ttl <= 0 {
		ttl = DefaultSessionTTL
	}
	if idle <= 0 {
		idle = DefaultSessionIdle
	}
	if max <= 0 {
		max = DefaultMaxSessions
	}
	if now == nil {
		now = time.Now
	}
	return &sessions{m: map[string]*session{}, ttl: ttl, idle: idle, max: max, now: now}
}

// randomID returns 32 random bytes, URL-safe base64.
func randomID() string {
	var b [32]byte
	rand.Read(b[:]) // never fails (crypto/rand.Read panics instead)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// create opens a session for a checked token. At the bound, expired
// sessions are dropped first, then the least recently used one.
func (s *sessions) create(token, name string) session {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if len(s.m) >= s.max {
		var oldest *session
		for id, se := range s.m {
			if s.expired(se, now) {
				delete(s.m, id)
				continue
			}
			if oldest == nil || se.lastSeen.Before(oldest.lastSeen) {
				oldest = se
			}
		}
		if len(s.m) >= s.max && oldest != nil {
			delete(s.m, oldest.id)
		}
	}
	se := &session{id: randomID(), token: token, name: name, csrf: randomID(), created: now, lastSeen: now}
	s.m[se.id] = se
	return *se
}

func (s *sessions) expired(se *session, now time.Time) bool {
	return now.Sub(se.created) >= s.ttl || now.Sub(se.lastSeen) >= s.idle
}

// get returns the live session with this id and marks it used; an expired
// one is deleted.
func (s *sessions) get(id string) (session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	se, ok := s.m[id]
	if !ok {
		return session{}, false
	}
	now := s.now()
	if s.expired(se, now) {
		delete(s.m, id)
		return session{}, false
	}
	se.lastSeen = now
	return *se, true
}

// remove ends a session (sign-out, or its token no longer valid).
func (s *sessions) remove(id string) {
	s.mu.Lock()
	delete(s.m, id)
	s.mu.Unlock()
}

// len reports the sessions held.
func (s *sessions) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// csrfOK compares a submitted CSRF token with the expected one in
// constant time; an empty expectation never matches.
func csrfOK(want, got string) bool {
	if want == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(want), []byte(got)) == 1
}

// limiter allows each client address a number of attempts per window
// (sign-in). It holds at most max addresses; when full, addresses whose
// window has passed are dropped, and if none has, the new address is
// refused rather than the table grown.
type limiter struct {
	mu     sync.Mutex
	per    int
	window time.Duration
	max    int
	now    func() time.Time
	m      map[string][]time.Time
}

func newLimiter(per int, window time.Duration, max int, now func() time.Time) *limiter {
	if now == nil {
		now = time.Now
	}
	return &limiter{per: per, window: window, max: max, now: now, m: map[string][]time.Time{}}
}

// allow records an attempt from addr and reports whether it is within the
// limit, and if not, how long until the next one is.
func (l *limiter) allow(addr string) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	cut := now.Add(-l.window)
	ts := l.m[addr]
	i := 0
	for i < len(ts) && !ts[i].After(cut) {
		i++
	}
	ts = ts[i:]
	if len(ts) >= l.per {
		l.m[addr] = ts
		return false, ts[0].Add(l.window).Sub(now)
	}
	if _, known := l.m[addr]; !known && len(l.m) >= l.max {
		for a, at := range l.m {
			if len(at) == 0 || !at[len(at)-1].After(cut) {
				delete(l.m, a)
			}
		}
		if len(l.m) >= l.max {
			return false, l.window
		}
	}
	l.m[addr] = append(ts, now)
	return true, 0
}
