package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// Headers of every delivery.
const (
	// SignatureHeader carries "sha256=" and the hex HMAC-SHA256 of the body
	// keyed with the endpoint's secret.
	SignatureHeader = "X-Gatehouse-Signature"
	EventHeader     = "X-Gatehouse-Event"
	DeliveryHeader  = "X-Gatehouse-Delivery"
)

// Defaults of a Sender.
const (
	DefaultTries   = 6
	DefaultBackoff = 5 * time.Second
	MaxBackoff     = 5 * time.Minute
	MaxPending     = 1000
)

// Sign returns the signature header value of body under secret.
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Target is one endpoint: its URL and the secret its deliveries are signed
// with (none: unsigned). Name identifies it in logs and attempts.
type Target struct {
	Name   string
	URL    string
	Secret string
}

// LogValue keeps the secret out of logs.
func (t Target) LogValue() slog.Value {
	return slog.GroupValue(slog.String("name", t.Name), slog.String("url", t.URL))
}

// Attempt is one delivery attempt, reported to SenderOptions.OnAttempt.
type Attempt struct {
	Target     Target
	Event      string
	ID         string // the delivery id, the same for each attempt of one delivery
	Attempt    int    // 1, 2, …
	At         time.Time
	StatusCode int    // 0 when no answer
	Error      string // empty when the endpoint answered 2xx
	OK         bool
	Final      bool // no further attempt follows
}

// SenderOptions tune a Sender.
type SenderOptions struct {
	Logger    *slog.Logger
	Guard     *Guard        // nil: a guard with no allow-list
	Timeout   time.Duration // per attempt; 0: 10 s
	Tries     int           // 0: DefaultTries
	Backoff   time.Duration // first wait between attempts, doubling up to MaxBackoff; 0: DefaultBackoff
	UserAgent string        // default "gatehouse"
	Now       func() time.Time
	NewID     func() string // delivery ids; nil: 16 random hex digits
	// OnAttempt, if not nil, is called after every attempt (from the
	// delivery's goroutine).
	OnAttempt func(Attempt)
}

// Sender delivers events in the background: Send never blocks, each
// delivery retries with a doubling backoff in its own goroutine, and at
// most MaxPending deliveries wait at once (more are dropped with a log
// line, so a dead endpoint cannot grow memory without bound).
type Sender struct {
	opts    SenderOptions
	log     *slog.Logger
	client  *http.Client
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	pending atomic.Int64
}

// NewSender returns a Sender; Close stops it.
func NewSender(opts SenderOptions) *Sender {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Guard == nil {
		opts.Guard = NewGuard("the allow-list")
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.Tries <= 0 {
		opts.Tries = DefaultTries
	}
	if opts.Backoff <= 0 {
		opts.Backoff = DefaultBackoff
	}
	if opts.UserAgent == "" {
		opts.UserAgent = "gatehouse"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.NewID == nil {
		opts.NewID = newID
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Sender{opts: opts, log: opts.Logger, client: opts.Guard.Client(opts.Timeout), ctx: ctx, cancel: cancel}
}

// Close stops retrying, waits for deliveries in flight to end, and closes
// idle connections.
func (s *Sender) Close() {
	s.cancel()
	s.wg.Wait()
	s.client.CloseIdleConnections()
}

// Pending returns the number of deliveries not finished yet.
func (s *Sender) Pending() int64 { return s.pending.Load() }

// Send delivers body as event to t in the background. It reports false if
// the delivery was dropped because MaxPending deliveries wait already.
func (s *Sender) Send(t Target, event string, body []byte) bool {
	if s.pending.Add(1) > MaxPending {
		s.pending.Add(-1)
		s.log.Warn("webhook queue full; event dropped", "endpoint", t, "event", event)
		return false
	}
	s.wg.Go(func() {
		defer s.pending.Add(-1)
		s.deliver(t, event, body)
	})
	return true
}

func (s *Sender) deliver(t Target, event string, body []byte) {
	id := s.opts.NewID()
	wait := s.opts.Backoff
	for attempt := 1; attempt <= s.opts.Tries; attempt++ {
		a := Attempt{Target: t, Event: event, ID: id, Attempt: attempt, At: s.opts.Now().UTC()}
		code, err := s.post(t, event, id, body)
		a.StatusCode = code
		switch {
		case err != nil:
			a.Error = err.Error()
		case code < 200 || code > 299:
			a.Error = fmt.Sprintf("answered HTTP %d", code)
		default:
			a.OK = true
		}
		a.Final = a.OK || attempt == s.opts.Tries || s.ctx.Err() != nil
		if s.opts.OnAttempt != nil {
			s.opts.OnAttempt(a)
		}
		if a.OK {
			return
		}
		if a.Final {
			s.log.Warn("webhook delivery failed; giving up", "endpoint", t, "event", event, "attempts", attempt, "err", a.Error)
			return
		}
		timer := time.NewTimer(wait)
		select {
		case <-s.ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
		wait = min(wait*2, MaxBackoff)
	}
}

func (s *Sender) post(t Target, event, id string, body []byte) (int, error) {
	req, err := http.NewRequestWithContext(s.ctx, http.MethodPost, t.URL, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", s.opts.UserAgent)
	req.Header.Set(EventHeader, event)
	req.Header.Set(DeliveryHeader, id)
	if t.Secret != "" {
		req.Header.Set(SignatureHeader, Sign(t.Secret, body))
	}
	resp, err := s.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is in the log already
		}
		return 0, err
	}
	defer resp.Body.Close()
	return resp.StatusCode, nil
}

// newID returns a random delivery id.
func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
