// Package health runs active HTTP health checks against backend members and
// reports their up/down transitions.
//
// A member starts up (optimistic, like HAProxy): a freshly started or
// reloaded edge must not answer 503 before the first check has run. It goes
// down after Fall consecutive failed checks and comes back after Rise
// consecutive successful ones. A check fails when the member cannot be
// reached, does not answer within the check's timeout, or answers with a
// status outside the expected list.
//
// Passive ejection (Watch.Eject) marks a member down at once, outside the
// active checks; the next successful active check brings it back.
package health

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"gatehouse/internal/config"
)

// Defaults applied to zero fields of config.HealthCheck.
const (
	DefaultInterval = 5 * time.Second
	DefaultTimeout  = 2 * time.Second
	DefaultRise     = 2
	DefaultFall     = 3
)

// Log attribute keys.
const (
	keyPool    = "pool"
	keyMember  = "member"
	keyReason  = "reason"
	keyCount   = "count"
	userAgent  = "gatehouse-health-check"
	maxDrained = 4 << 10
)

// Target is one member to check.
type Target struct {
	Pool    string // pool name, for logs
	Address string // host:port of the member
	Check   config.HealthCheck
	// Down starts the member down instead of up; a reload uses it to carry
	// a member's state over. The zero value starts the member up.
	Down bool
}

// Options configure a Checker. The zero value is usable.
type Options struct {
	// Logger receives transitions; nil discards.
	Logger *slog.Logger
	// Transport performs the checks. Nil means a dedicated transport that
	// opens a new connection for every check (as HAProxy does), so a member
	// that stops accepting connections is noticed at once.
	Transport http.RoundTripper
}

// Checker runs active health checks. It is safe for concurrent use; Close
// stops every Watch it started and waits for them.
type Checker struct {
	log       *slog.Logger
	rt        http.RoundTripper
	ownRT     *http.Transport // non-nil when rt is ours to close
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// New returns a Checker.
func New(opts Options) *Checker {
	c := &Checker{log: opts.Logger, rt: opts.Transport}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.log = c.log.With("component", "health")
	if c.rt == nil {
		c.ownRT = &http.Transport{
			Proxy:                  nil,
			DialContext:            (&net.Dialer{}).DialContext,
			DisableKeepAlives:      true,
			DisableCompression:     true,
			MaxResponseHeaderBytes: 64 << 10,
		}
		c.rt = c.ownRT
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c
}

// Close stops all checks and waits for their goroutines to return. Reports
// may still arrive while Close runs, never after it returns.
func (c *Checker) Close() {
	c.closeOnce.Do(func() {
		c.cancel()
		c.wg.Wait()
		if c.ownRT != nil {
			c.ownRT.CloseIdleConnections()
		}
	})
}

// Watch starts checking t and calls report(up) on every transition, from
// the check's goroutine, never concurrently for one Watch. The initial
// state (up unless t.Down) is not reported. With an empty t.Check.Path no
// check runs and the member keeps its initial state.
func (c *Checker) Watch(t Target, report func(up bool)) *Watch {
	hc := t.Check
	w := &Watch{
		c:        c,
		target:   t,
		report:   report,
		interval: orDefault(hc.Interval.D(), DefaultInterval),
		timeout:  orDefault(hc.Timeout.D(), DefaultTimeout),
		rise:     orDefaultInt(hc.Rise, DefaultRise),
		fall:     orDefaultInt(hc.Fall, DefaultFall),
		expect:   slices.Clone(hc.ExpectStatus),
		up:       !t.Down,
		done:     make(chan struct{}),
	}
	if w.report == nil {
		w.report = func(bool) {}
	}
	w.ctx, w.cancel = context.WithCancel(c.ctx)
	if hc.Path == "" {
		close(w.done)
		return w
	}
	w.url = "http://" + t.Address + hc.Path
	c.wg.Add(1)
	go w.run()
	return w
}

// Watch is the health state of one member under active checks.
type Watch struct {
	c        *Checker
	target   Target
	report   func(up bool)
	url      string
	interval time.Duration
	timeout  time.Duration
	rise     int
	fall     int
	expect   []int
	ctx      context.Context
	cancel   context.CancelFunc
	done     chan struct{}

	mu sync.Mutex // mu guards the fields below and orders reports
	up bool
	// ok and bad count consecutive successes and failures.
	ok, bad int
	ejected bool
}

// Up reports the member's current state.
func (w *Watch) Up() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.up
}

// Stop ends the checks of this member and waits for its goroutine. It is
// idempotent.
func (w *Watch) Stop() {
	w.cancel()
	<-w.done
}

// Eject marks the member down at once because live traffic failed (passive
// ejection); the next successful active check marks it up again. Without
// active checks (empty path) Eject does nothing, since nothing would ever
// bring the member back.
func (w *Watch) Eject(reason error) {
	if w.url == "" {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.up || w.ctx.Err() != nil {
		return
	}
	w.up, w.ok, w.bad, w.ejected = false, 0, 0, true
	w.c.log.Warn("member ejected", keyPool, w.target.Pool, keyMember, w.target.Address, keyReason, errString(reason))
	w.report(false)
}

func (w *Watch) run() {
	defer w.c.wg.Done()
	defer close(w.done)
	// Jitter the first check over one interval so that many members (and
	// the pools of a reloaded config) do not check in lockstep.
	t := time.NewTimer(rand.N(w.interval))
	defer t.Stop()
	for {
		select {
		case <-w.ctx.Done():
			return
		case <-t.C:
		}
		err := w.check()
		if w.ctx.Err() != nil {
			return
		}
		w.record(err)
		t.Reset(w.interval)
	}
}

// check performs one check; nil means healthy.
func (w *Watch) check() error {
	ctx, cancel := context.WithTimeout(w.ctx, w.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", userAgent)
	if w.target.Check.Host != "" {
		req.Host = w.target.Check.Host
	}
	res, err := w.c.rt.RoundTrip(req)
	if err != nil {
		return err
	}
	_, _ = io.CopyN(io.Discard, res.Body, maxDrained)
	res.Body.Close()
	if !w.expected(res.StatusCode) {
		return fmt.Errorf("unexpected status %d", res.StatusCode)
	}
	return nil
}

func (w *Watch) expected(code int) bool {
	if len(w.expect) == 0 {
		return code >= 200 && code <= 399
	}
	return slices.Contains(w.expect, code)
}

// record applies one check result to the rise/fall state machine.
func (w *Watch) record(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err == nil {
		w.bad = 0
		if w.up {
			return
		}
		w.ok++
		if w.ok < w.rise && !w.ejected {
			return
		}
		w.up, w.ok, w.ejected = true, 0, false
		w.c.log.Info("member up", keyPool, w.target.Pool, keyMember, w.target.Address)
		w.report(true)
		return
	}
	w.ok = 0
	if !w.up {
		return
	}
	w.bad++
	if w.bad < w.fall {
		return
	}
	w.up, w.bad = false, 0
	w.c.log.Warn("member down", keyPool, w.target.Pool, keyMember, w.target.Address,
		keyReason, err.Error(), keyCount, w.fall)
	w.report(false)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

func orDefaultInt(n, def int) int {
	if n <= 0 {
		return def
	}
	return n
}
