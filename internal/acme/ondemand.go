package acme

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"gatehouse/internal/hostnames"
)

// TLSConfig wraps base, whose GetCertificate selects installed
// certificates (certs.Manager.TLSConfig), with the ACME paths of the HTTPS
// listener: a ClientHello offering acme-tls/1 gets the TLS-ALPN-01
// challenge certificate; with acme.on_demand, a handshake for a registered
// ACME hostname that has no certificate yet waits (bounded) for its first
// order. Every other handshake pays one look at the offered protocols and,
// with on-demand on, one map lookup.
func (m *Manager) TLSConfig(base *tls.Config) *tls.Config {
	c := m.chal.TLSConfig(base)
	get := base.GetCertificate
	c.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if od := m.cfg().OnDemand; od.Enabled && hello.ServerName != "" {
			ctx := hello.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			m.onDemand(ctx, hostnames.Normalize(hello.ServerName), od.Wait.D())
		}
		return get(hello)
	}
	return c
}

// TLSConfig wraps base so that a ClientHello offering acme-tls/1 gets the
// TLS-ALPN-01 challenge certificate of its name from the store; every
// other handshake pays one look at the offered protocols.
func (c *Challenges) TLSConfig(base *tls.Config) *tls.Config {
	out := base.Clone()
	inner := base.GetConfigForClient
	out.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		if offersACMETLS(hello) {
			return c.GetConfigForClient(hello)
		}
		if inner != nil {
			return inner(hello)
		}
		return nil, nil
	}
	return out
}

// onDemand waits, up to wait, for the first certificate of a registered
// ACME hostname that has none; it returns at once for every other name.
// Concurrent handshakes for one name share one order (the queue holds a
// name once, the lock allows one order in the fleet).
func (m *Manager) onDemand(ctx context.Context, name string, wait time.Duration) {
	state, isACME, ok := m.hn.Lookup(name)
	if !ok {
		if m.cfg().OnDemand.AskURL == "" || !m.ask(ctx, name) {
			return
		}
		state, isACME, ok = m.hn.Lookup(name)
		if !ok {
			return
		}
	}
	// Only a name waiting for its first certificate: a failed one is
	// retried on its schedule, not by every handshake.
	if !isACME || (state != hostnames.PendingValidation && state != hostnames.Issuing) || m.opts.Certs.Has(name) {
		return
	}
	m.Trigger(name)
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	t := time.NewTicker(25 * time.Millisecond)
	defer t.Stop()
	for !m.opts.Certs.Has(name) {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// asker asks the operator's endpoint whether an unregistered name may be
// issued, caching answers and sharing concurrent questions.
type asker struct {
	flight singleflight.Group
	mu     sync.Mutex
	cache  map[string]askAnswer
	// inflight bounds concurrent questions: a flood of unknown names is
	// refused beyond it rather than queued.
	inflight chan struct{}
}

type askAnswer struct {
	yes     bool
	expires time.Time
}

// maxAsks bounds concurrent questions to the ask endpoint; maxAskCache
// bounds the answers kept.
const (
	maxAsks     = 16
	maxAskCache = 100000
)

// ask reports whether the ask endpoint allows name, registering it as a
// hostname when it does. A slow or failing endpoint is a no.
func (m *Manager) ask(ctx context.Context, name string) bool {
	if hostnames.CheckName(name, false) != nil {
		return false
	}
	a := &m.asker
	od := m.cfg().OnDemand
	now := m.now()
	a.mu.Lock()
	if a.cache == nil {
		a.cache = map[string]askAnswer{}
		a.inflight = make(chan struct{}, maxAsks)
	}
	if ans, ok := a.cache[name]; ok && now.Before(ans.expires) {
		a.mu.Unlock()
		return ans.yes
	}
	a.mu.Unlock()
	v, _, _ := a.flight.Do(name, func() (any, error) {
		select {
		case a.inflight <- struct{}{}:
			defer func() { <-a.inflight }()
		default:
			return false, nil // too many questions at once: no, not cached
		}
		yes := m.askOnce(ctx, od.AskURL, name, od.AskTimeout.D())
		a.mu.Lock()
		if len(a.cache) >= maxAskCache {
			clear(a.cache)
		}
		a.cache[name] = askAnswer{yes: yes, expires: m.now().Add(od.AskCache.D())}
		a.mu.Unlock()
		if yes {
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			_, err := m.hn.Add(actx, hostnames.Hostname{Name: name, Pool: od.Pool, Tenant: od.Tenant})
			var conf *hostnames.ConflictError
			if err != nil && !errors.As(err, &conf) {
				m.log.Warn("registering a hostname the ask endpoint allowed", "name", name, "err", err)
				return false, nil
			}
			m.log.Info("hostname registered on demand (ask endpoint said yes)", "name", name)
		}
		return yes, nil
	})
	return v.(bool)
}

func (m *Manager) askOnce(ctx context.Context, askURL, name string, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	u := askURL
	if strings.Contains(u, "?") {
		u += "&domain=" + url.QueryEscape(name)
	} else {
		u += "?domain=" + url.QueryEscape(name)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return false
	}
	resp, err := m.askClient.Do(req)
	if err != nil {
		m.log.Debug("ask endpoint did not answer", "name", name, "err", err)
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
