// Package acme obtains and renews certificates for the customer hostnames
// from an ACME CA (RFC 8555) through github.com/mholt/acmez, and answers
// the CA's challenges on every node from the store.
//
// Every node follows the hostnames and keeps, in memory, the time each is
// next due (first issuance, renewal, or retry after a failure: the
// NextAttempt of its record, so a restart asks the CA nothing). When a name
// is due, a node takes its lock (an etcd lease on a fleet, so exactly one
// node orders a name and a node that dies mid-order loses it within the
// lease), re-reads the record, orders, installs the certificate through the
// certificate manager (the same validation, index and fleet propagation as
// an uploaded bundle) and writes the new state and due time.
package acme

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	mrand "math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	acmez "github.com/mholt/acmez/v3"
	acmeproto "github.com/mholt/acmez/v3/acme"

	"golang.org/x/time/rate"

	"gatehouse/internal/acme/budget"
	"gatehouse/internal/acme/schedule"
	"gatehouse/internal/certs"
	"gatehouse/internal/config"
	"gatehouse/internal/hostnames"
	"gatehouse/internal/store"
)

// Certs is what the manager needs of the certificate manager.
type Certs interface {
	Add(ctx context.Context, certPEM, keyPEM []byte) (certs.Info, []string, error)
	Remove(ctx context.Context, id string) error
	Has(name string) bool
}

// Hostnames is what the manager needs of the hostnames.
type Hostnames interface {
	Get(ctx context.Context, name string) (hostnames.Hostname, error)
	Update(ctx context.Context, name string, fn func(h *hostnames.Hostname) error) (hostnames.Hostname, error)
	Lookup(name string) (state hostnames.State, acme, ok bool)
	Add(ctx context.Context, h hostnames.Hostname) (hostnames.Hostname, error)
}

// Options configure a Manager.
type Options struct {
	Logger *slog.Logger
	Store  store.Store
	KEK    *certs.KEK
	Certs  Certs
	// Hostnames is set with SetHostnames when the hostnames need the
	// manager's OnHostname at their construction.
	Hostnames Hostnames
	// Config returns the current acme section.
	Config func() *config.ACME
	// HTTPClient talks to the CA (nil: http.DefaultClient); its transport
	// trusts acme.ca_file.
	HTTPClient *http.Client
	// EABKey is the External Account Binding's HMAC key (acme.eab.hmac_file).
	EABKey string
	// Now returns the current time (nil: time.Now).
	Now func() time.Time
	// NodeID names this node in logs.
	NodeID string
}

// Manager orders, installs and renews ACME certificates.
type Manager struct {
	opts Options
	st   store.Store
	kek  *certs.KEK
	log  *slog.Logger
	now  func() time.Time
	hn   Hostnames
	chal *Challenges
	lock locker
	bud  *budget.Budgets
	led  *ledger // spends bud through the store
	// rate is acme.rate_limits.orders_per_minute on this node (nil: none).
	rate *rate.Limiter
	http *http.Client
	// retryAfter is the last Retry-After the CA sent with an error.
	retryAfter atomic.Int64

	// qmu guards rnd and orders changes of q with the hostnames' view.
	qmu  sync.Mutex
	q    *schedule.Queue
	rnd  *mrand.Rand
	wake chan struct{}

	amu      sync.Mutex
	accounts map[string]acmeproto.Account

	// emu guards expiring: names whose certificate is past its emergency
	// renewal point and could not be renewed.
	emu      sync.Mutex
	expiring map[string]time.Time

	ordersOK, ordersFailed, lockBusy atomic.Uint64

	asker     asker
	askClient *http.Client
}

// New returns a Manager; Run does the work.
func New(opts Options) *Manager {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	m := &Manager{opts: opts, st: opts.Store, kek: opts.KEK, log: log.With("component", "acme"), now: now, hn: opts.Hostnames,
		q: schedule.New(), rnd: mrand.New(mrand.NewPCG(uint64(time.Now().UnixNano()), 0x9e3779b97f4a7c15)), wake: make(chan struct{}, 1),
		accounts: map[string]acmeproto.Account{}, expiring: map[string]time.Time{}, lock: newLocker(opts.Store)}
	m.chal = NewChallenges(opts.Store, opts.KEK, log, now)
	m.askClient = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	rl := opts.Config().RateLimits
	l := budget.DefaultLimits
	for _, f := range []struct {
		dst *int
		v   int
	}{{&l.OrdersPer3h, rl.OrdersPer3h}, {&l.CertsPerDomainPer7d, rl.CertsPerDomainPer7d},
		{&l.DuplicatesPer7d, rl.DuplicatesPer7d}, {&l.FailedValidationsPerNameHour, rl.FailedValidationsPerNameHour}} {
		if f.v > 0 {
			*f.dst = f.v
		}
	}
	m.bud = budget.New(l, now)
	m.led = &ledger{st: opts.Store, bud: m.bud, log: m.log, now: now}
	if pm := rl.OrdersPerMinute; pm > 0 {
		m.rate = rate.NewLimiter(rate.Limit(float64(pm)/60), pm)
	}
	hc := opts.HTTPClient
	if hc == nil {
		hc = &http.Client{}
	}
	cp := *hc
	base := cp.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	cp.Transport = retryAfterTransport{base: base, m: m}
	if cp.Timeout == 0 {
		cp.Timeout = 30 * time.Second
	}
	m.http = &cp
	return m
}

// SetHostnames gives the manager the hostnames (before Run).
func (m *Manager) SetHostnames(h Hostnames) { m.hn = h }

// Challenges returns the challenge responder (for the listeners).
func (m *Manager) Challenges() *Challenges { return m.chal }

func (m *Manager) cfg() *config.ACME { return m.opts.Config() }

// retryAfterTransport remembers the Retry-After of the CA's error answers
// (acmez does not surface it), so that a rateLimited problem is honoured.
type retryAfterTransport struct {
	base http.RoundTripper
	m    *Manager
}

func (t retryAfterTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(r)
	if err == nil && resp.StatusCode >= 400 {
		if v := resp.Header.Get("Retry-After"); v != "" {
			if secs, perr := strconv.Atoi(v); perr == nil && secs >= 0 {
				t.m.retryAfter.Store(t.m.now().Add(time.Duration(min(secs, 7*24*3600)) * time.Second).UnixNano())
			} else if at, perr := http.ParseTime(v); perr == nil {
				t.m.retryAfter.Store(at.UnixNano())
			}
		}
	}
	return resp, err
}

// OnHostname follows a hostname's record (hostnames.Options.OnChange): an
// ACME hostname is queued at its NextAttempt.
func (m *Manager) OnHostname(h hostnames.Hostname, ok bool) {
	m.qmu.Lock()
	if !ok || h.Source != hostnames.SourceACME || h.NextAttempt.IsZero() {
		m.q.Remove(h.Name)
	} else {
		m.q.Set(h.Name, h.NextAttempt)
	}
	m.qmu.Unlock()
	if !ok {
		m.bud.Forget([]string{h.Name})
		m.emu.Lock()
		delete(m.expiring, h.Name)
		m.emu.Unlock()
	}
	m.poke()
}

func (m *Manager) poke() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// Trigger makes name due now on this node (on-demand issuance).
func (m *Manager) Trigger(name string) {
	m.qmu.Lock()
	m.q.Set(name, m.now())
	m.qmu.Unlock()
	m.poke()
}

// Queued returns the names this node has scheduled, and how many wait for
// a CA budget.
func (m *Manager) Queued() (scheduled, waitingBudget int) {
	_, held := m.bud.Queued(0)
	return m.q.Len(), held
}

// ScheduleBytes is the memory of the renewal schedule (for the capacity
// registry).
func (m *Manager) ScheduleBytes() int64 { return m.q.Bytes() }

// Budgets returns each CA budget's usage and limit (for the capacity
// registry): the busiest account, domain, name set or name of each.
func (m *Manager) Budgets() []budget.Usage { return m.bud.Usage() }

// account is the budgets' account key: the primary directory.
func (m *Manager) budgetAccount() string { return m.cfg().Directories[0] }

// ExpiringUnrenewed returns the names whose certificate is past its
// emergency renewal point and whose renewal failed on this node.
func (m *Manager) ExpiringUnrenewed() map[string]time.Time {
	m.emu.Lock()
	defer m.emu.Unlock()
	out := make(map[string]time.Time, len(m.expiring))
	for k, v := range m.expiring {
		out[k] = v
	}
	return out
}

// Orders returns the orders this node completed and failed, and how often
// it found a due name locked by another node.
func (m *Manager) Orders() (ok, failed, lockBusy uint64) {
	return m.ordersOK.Load(), m.ordersFailed.Load(), m.lockBusy.Load()
}

// Run processes due names until ctx is done, with at most acme.workers
// orders at once, and sweeps stale challenge records.
func (m *Manager) Run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, max(1, m.cfg().Workers))
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	lastSweep := m.now()
	lastLedgerSweep := time.Time{}
	ledgerFollow := m.followLedger(ctx)
	defer ledgerFollow.Stop()
	var buf []string
	for ctx.Err() == nil {
		free := cap(sem) - len(sem)
		m.qmu.Lock()
		buf = m.q.PopDue(m.now(), free, buf[:0])
		next, ok := m.q.Next()
		m.qmu.Unlock()
		for _, name := range buf {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem; m.poke() }()
				m.process(ctx, name)
			})
		}
		if m.now().Sub(lastSweep) > challengeTTL {
			lastSweep = m.now()
			if n, err := m.chal.Sweep(ctx); err == nil && n > 0 {
				m.log.Info("removed stale challenge records", "count", n)
			}
		}
		if m.now().Sub(lastLedgerSweep) > ledgerSweepEvery {
			lastLedgerSweep = m.now()
			if n, err := m.led.sweep(ctx); err != nil && ctx.Err() == nil {
				m.log.Warn("removing expired CA budget records", "err", err, "removed", n)
			} else if n > 0 {
				m.log.Info("removed expired CA budget records", "count", n)
			}
		}
		wait := time.Minute
		if ok && len(sem) < cap(sem) {
			wait = min(wait, max(next.Sub(m.now()), time.Millisecond))
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
		case <-m.wake:
		case <-timer.C:
		}
	}
}

func (m *Manager) requeue(name string, at time.Time) {
	m.qmu.Lock()
	if _, _, ok := m.hn.Lookup(name); ok {
		m.q.Set(name, at)
	}
	m.qmu.Unlock()
}

func (m *Manager) jitter(d time.Duration) time.Duration {
	m.qmu.Lock()
	defer m.qmu.Unlock()
	return time.Duration(m.rnd.Int64N(int64(d) + 1))
}

// process orders name if it is still due and no other node is ordering it.
func (m *Manager) process(ctx context.Context, name string) {
	l, err := m.lock.tryLock(ctx, name)
	if errors.Is(err, errLocked) {
		// Another node orders it: its result arrives through the watch;
		// if it dies, its lease ends and this node tries again.
		m.lockBusy.Add(1)
		m.requeue(name, m.now().Add(lockTTL+2*time.Second+m.jitter(3*time.Second)))
		return
	}
	if err != nil {
		m.log.Warn("taking an order lock", "name", name, "err", err)
		m.requeue(name, m.now().Add(5*time.Second+m.jitter(5*time.Second)))
		return
	}
	defer l.release()
	h, err := m.hn.Get(ctx, name)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			m.requeue(name, m.now().Add(5*time.Second+m.jitter(5*time.Second)))
		}
		return
	}
	now := m.now()
	if h.Source != hostnames.SourceACME {
		return
	}
	if h.NextAttempt.After(now) {
		m.requeue(name, h.NextAttempt) // done meanwhile (by another node)
		return
	}
	renewing := h.CertID != "" && now.Before(h.NotAfter)
	ari := renewing && !h.WindowStart.IsZero() && !now.Before(h.WindowStart) && len(h.AuthorityKeyID) > 0
	var wait time.Duration
	var reason string
	if renewing {
		wait, reason = m.bud.CheckRenewal(m.budgetAccount(), []string{name}, ari)
	} else {
		wait, reason = m.bud.Check(m.budgetAccount(), []string{name})
	}
	if wait == 0 && m.rate != nil {
		if r := m.rate.ReserveN(now, 1); r.OK() {
			if d := r.DelayFrom(now); d > 0 {
				r.CancelAt(now)
				wait, reason = d, fmt.Sprintf("acme.rate_limits.orders_per_minute (%d)", m.cfg().RateLimits.OrdersPerMinute)
			}
		}
	}
	if wait > 0 {
		// Visible in hostname list: the reason and when it resumes.
		m.log.Info("order waits for a CA budget", "name", name, "wait", wait.Round(time.Second), "budget", reason)
		next := now.Add(wait)
		if _, err := m.hn.Update(ctx, name, func(h *hostnames.Hostname) error {
			h.Reason = "waiting for a CA budget: " + reason
			h.NextAttempt = next.UTC()
			return nil
		}); err != nil {
			m.requeue(name, next)
		}
		return
	}
	h, err = m.hn.Update(ctx, name, func(h *hostnames.Hostname) error {
		if renewing {
			h.State = hostnames.Renewing
		} else {
			h.State = hostnames.Issuing
		}
		// In progress: no node tries again before the lock could have
		// expired (this node writes the outcome sooner; if it dies,
		// another node takes over from then).
		h.NextAttempt = now.Add(inProgressFor).UTC()
		return nil
	})
	if err != nil {
		m.requeue(name, now.Add(5*time.Second))
		return
	}
	octx, cancel := context.WithTimeout(ctx, m.cfg().OrderTimeout.D())
	defer cancel()
	if lost := l.lost(); lost != nil {
		go func() {
			select {
			case <-lost:
				cancel()
			case <-octx.Done():
			}
		}()
	}
	start := m.now()
	res, err := m.order(octx, h, ari)
	if ctx.Err() != nil {
		return // shutting down: the record stays due, another node or the next start picks it up
	}
	if err == nil {
		err = m.install(ctx, h, res)
	}
	if err != nil {
		m.failed(ctx, h, err)
		return
	}
	m.ordersOK.Add(1)
	m.log.Info("certificate obtained", "name", name, "renewal", renewing, "took", m.now().Sub(start).Round(time.Millisecond))
}

// orderResult is an issued certificate chain and its key.
type orderResult struct {
	chainPEM, keyPEM []byte
	leaf             *x509.Certificate
	ari              *schedule.Window
}

// order obtains a certificate for h from the first directory that answers.
func (m *Manager) order(ctx context.Context, h hostnames.Hostname, ari bool) (orderResult, error) {
	cfg := m.cfg()
	key, keyPEM, err := newKey(cfg.KeyType)
	if err != nil {
		return orderResult{}, err
	}
	var lastErr error
	for _, dir := range cfg.Directories {
		client := &acmez.Client{
			Client:           &acmeproto.Client{Directory: dir, HTTPClient: m.http, Logger: slog.New(slog.DiscardHandler)},
			ChallengeSolvers: m.solvers(cfg),
		}
		acct, err := m.account(ctx, client.Client, dir)
		if err != nil {
			lastErr = err
			if isProblem(err) {
				return orderResult{}, err
			}
			m.log.Warn("ACME directory not usable; trying the next", "directory", dir, "err", err)
			continue
		}
		csr, err := acmez.NewCSR(key, []string{h.Name})
		if err != nil {
			return orderResult{}, err
		}
		params, err := acmez.OrderParametersFromCSR(acct, csr)
		if err != nil {
			return orderResult{}, err
		}
		params.Profile = cfg.Profile
		if ari {
			// Name the certificate this order replaces (RFC 9773 §5):
			// the CA exempts such renewals from its limits.
			if serial, ok := new(big.Int).SetString(h.Serial, 16); ok {
				params.Replaces = &x509.Certificate{SerialNumber: serial, AuthorityKeyId: h.AuthorityKeyID}
			}
		}
		m.led.spend(ctx, ledgerOrder, m.now(), ledgerEvent{Account: m.budgetAccount()})
		chains, err := client.ObtainCertificate(ctx, params)
		if err != nil {
			lastErr = err
			if isProblem(err) || ctx.Err() != nil {
				return orderResult{}, err
			}
			m.log.Warn("ordering from an ACME directory failed; trying the next", "directory", dir, "err", err)
			continue
		}
		if len(chains) == 0 {
			return orderResult{}, errors.New("the CA returned no certificate chain")
		}
		blk, _ := pem.Decode(chains[0].ChainPEM)
		if blk == nil {
			return orderResult{}, errors.New("the CA returned a chain that is not PEM")
		}
		leaf, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return orderResult{}, fmt.Errorf("the CA's certificate: %w", err)
		}
		res := orderResult{chainPEM: chains[0].ChainPEM, keyPEM: keyPEM, leaf: leaf}
		// The CA's suggested renewal window, when it offers ARI.
		if ri, err := client.GetRenewalInfo(ctx, leaf); err == nil && ri.SuggestedWindow.End.After(ri.SuggestedWindow.Start) {
			res.ari = &schedule.Window{Start: ri.SuggestedWindow.Start, End: ri.SuggestedWindow.End}
		}
		return res, nil
	}
	return orderResult{}, lastErr
}

func (m *Manager) solvers(cfg *config.ACME) map[string]acmez.Solver {
	s := map[string]acmez.Solver{}
	for _, ch := range cfg.Challenges {
		switch ch {
		case "http-01":
			s[acmeproto.ChallengeTypeHTTP01] = httpSolver{m.chal}
		case "tls-alpn-01":
			s[acmeproto.ChallengeTypeTLSALPN01] = alpnSolver{m.chal}
		case "dns-01":
			if cfg.DNS01 != nil {
				s[acmeproto.ChallengeTypeDNS01] = dnsSolver{cmd: cfg.DNS01.Command, timeout: cfg.DNS01.Timeout.D(), log: m.log}
			}
		}
	}
	return s
}

// isProblem reports whether err is the CA's answer (a problem document),
// as opposed to the CA not answering.
func isProblem(err error) bool {
	var p acmeproto.Problem
	return errors.As(err, &p)
}

func newKey(kt string) (crypto.Signer, []byte, error) {
	var key crypto.Signer
	var err error
	if kt == "rsa2048" {
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	} else {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// install adds the certificate through the certificate manager and
// records the new state and renewal time.
func (m *Manager) install(ctx context.Context, h hostnames.Hostname, res orderResult) error {
	info, _, err := m.opts.Certs.Add(ctx, res.chainPEM, res.keyPEM)
	if err != nil {
		return fmt.Errorf("installing the issued certificate: %w", err)
	}
	m.led.spend(ctx, ledgerCertificate, m.now(), ledgerEvent{Account: m.budgetAccount(), Names: []string{h.Name}})
	// A draw seeded by the name and the certificate: every node, and this
	// one after a restart, computes the same time.
	at := schedule.RenewAt(info.NotBefore, info.NotAfter, res.ari, schedule.Seeded(h.Name, info.NotBefore))
	_, err = m.hn.Update(ctx, h.Name, func(h *hostnames.Hostname) error {
		h.State = hostnames.Active
		h.Reason, h.Attempts = "", 0
		h.CertID, h.Serial = info.ID, info.Serial
		h.AuthorityKeyID = res.leaf.AuthorityKeyId
		h.NotBefore, h.NotAfter = info.NotBefore, info.NotAfter
		h.WindowStart, h.WindowEnd = time.Time{}, time.Time{}
		if res.ari != nil {
			h.WindowStart, h.WindowEnd = res.ari.Start, res.ari.End
		}
		h.NextAttempt = at.UTC()
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		// Removed during the order: its certificate goes too.
		if rerr := m.opts.Certs.Remove(context.WithoutCancel(ctx), info.ID); rerr != nil {
			m.log.Warn("removing the certificate of a hostname removed during its order", "name", h.Name, "cert", info.ID, "err", rerr)
		}
		return nil
	}
	m.emu.Lock()
	delete(m.expiring, h.Name)
	m.emu.Unlock()
	return err
}

// failed records a failed order: the reason, the attempt count and the
// retry time (the CA's Retry-After when it sent one, else the backoff).
func (m *Manager) failed(ctx context.Context, h hostnames.Hostname, oerr error) {
	m.ordersFailed.Add(1)
	now := m.now()
	reason := oerr.Error()
	var p acmeproto.Problem
	isRate := false
	if errors.As(oerr, &p) {
		if strings.HasSuffix(p.Type, ":rateLimited") {
			isRate = true
		}
		if strings.HasSuffix(p.Type, ":unauthorized") || strings.HasSuffix(p.Type, ":connection") || strings.HasSuffix(p.Type, ":dns") ||
			strings.HasSuffix(p.Type, ":incorrectResponse") || strings.HasSuffix(p.Type, ":tls") {
			m.led.spend(ctx, ledgerFailure, now, ledgerEvent{Names: []string{h.Name}})
		}
	}
	if strings.Contains(reason, "rateLimited") {
		isRate = true
	}
	m.qmu.Lock()
	next := now.Add(schedule.Backoff(h.Attempts+1, m.rnd))
	m.qmu.Unlock()
	if ra := time.Unix(0, m.retryAfter.Swap(0)); isRate && ra.After(now) {
		m.bud.RateLimited(m.budgetAccount(), ra) // at once here; the fleet through the ledger
		m.led.spend(ctx, ledgerRateLimited, now, ledgerEvent{Account: m.budgetAccount(), Until: ra.Unix() + 1})
		next = ra
	}
	if len(reason) > 1000 {
		reason = reason[:1000]
	}
	_, err := m.hn.Update(context.WithoutCancel(ctx), h.Name, func(h *hostnames.Hostname) error {
		h.State = hostnames.Failed
		h.Reason = reason
		h.Attempts++
		h.NextAttempt = next.UTC()
		return nil
	})
	if err != nil {
		m.log.Warn("recording a failed order", "name", h.Name, "err", err)
		m.requeue(h.Name, next)
	}
	if h.CertID != "" && now.Before(h.NotAfter) && schedule.Emergency(h.NotBefore, h.NotAfter, now) {
		m.emu.Lock()
		m.expiring[h.Name] = h.NotAfter
		m.emu.Unlock()
		m.log.Warn("certificate expires soon and could not be renewed", "name", h.Name, "not_after", h.NotAfter, "reason", reason, "next_attempt", next)
	}
}
