package acme

import (
	"fmt"
	"sync"
	"time"

	"golang.org/x/net/publicsuffix"
)

// The CA's rate limits kept as budgets. This is the simplest correct
// version (sliding windows in this node's memory); internal/acme/budget
// replaces it when it lands.

// limits are the CA's rate limits.
type limits struct {
	OrdersPer3h, CertsPerDomainPer7d, DuplicatesPer7d, FailedValidationsPerNameHour int
	OrdersPerMinute                                                                 int // Gatehouse's own cap; 0: none
}

// defaultLimits are Let's Encrypt's published limits.
var defaultLimits = limits{OrdersPer3h: 300, CertsPerDomainPer7d: 50, DuplicatesPer7d: 5, FailedValidationsPerNameHour: 5}

// budgetUsage is one budget's usage against its limit.
type budgetUsage struct {
	Resource     string
	Usage, Limit int64
}

type budgets struct {
	l   limits
	now func() time.Time

	mu      sync.Mutex
	orders  []time.Time            // this account's new orders, oldest first
	perDom  map[string][]time.Time // registered domain → certificates issued
	perName map[string][]time.Time // name set → certificates issued (duplicates)
	failed  map[string][]time.Time // name → failed validations
	limited time.Time              // the CA said rateLimited until then
	queued  map[string]bool        // names waiting for budget
}

func newBudgets(l limits, now func() time.Time) *budgets {
	if l.OrdersPer3h == 0 {
		l.OrdersPer3h = defaultLimits.OrdersPer3h
	}
	if l.CertsPerDomainPer7d == 0 {
		l.CertsPerDomainPer7d = defaultLimits.CertsPerDomainPer7d
	}
	if l.DuplicatesPer7d == 0 {
		l.DuplicatesPer7d = defaultLimits.DuplicatesPer7d
	}
	if l.FailedValidationsPerNameHour == 0 {
		l.FailedValidationsPerNameHour = defaultLimits.FailedValidationsPerNameHour
	}
	return &budgets{l: l, now: now, perDom: map[string][]time.Time{}, perName: map[string][]time.Time{},
		failed: map[string][]time.Time{}, queued: map[string]bool{}}
}

// prune drops the times before cutoff from a sorted slice.
func prune(ts []time.Time, cutoff time.Time) []time.Time {
	i := 0
	for i < len(ts) && ts[i].Before(cutoff) {
		i++
	}
	return ts[i:]
}

func registeredDomain(name string) string {
	if d, err := publicsuffix.EffectiveTLDPlusOne(name); err == nil {
		return d
	}
	return name
}

// wait returns how long an order for name must wait for budget (0: go),
// and which budget holds it.
func (b *budgets) wait(name string) (time.Duration, string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	var w time.Duration
	reason := ""
	hold := func(d time.Duration, r string) {
		if d > w {
			w, reason = d, r
		}
	}
	if now.Before(b.limited) {
		hold(b.limited.Sub(now), "the CA answered rateLimited (Retry-After)")
	}
	b.orders = prune(b.orders, now.Add(-3*time.Hour))
	if len(b.orders) >= b.l.OrdersPer3h {
		hold(b.orders[len(b.orders)-b.l.OrdersPer3h].Add(3*time.Hour).Sub(now), fmt.Sprintf("new orders per 3h (%d)", b.l.OrdersPer3h))
	}
	if pm := b.l.OrdersPerMinute; pm > 0 {
		n := 0
		for i := len(b.orders) - 1; i >= 0 && b.orders[i].After(now.Add(-time.Minute)); i-- {
			n++
		}
		if n >= pm {
			hold(b.orders[len(b.orders)-pm].Add(time.Minute).Sub(now), fmt.Sprintf("acme.rate_limits.orders_per_minute (%d)", pm))
		}
	}
	dom := registeredDomain(name)
	ds := prune(b.perDom[dom], now.Add(-7*24*time.Hour))
	b.perDom[dom] = ds
	if len(ds) >= b.l.CertsPerDomainPer7d {
		hold(ds[len(ds)-b.l.CertsPerDomainPer7d].Add(7*24*time.Hour).Sub(now), fmt.Sprintf("certificates per registered domain %s per 7 days (%d)", dom, b.l.CertsPerDomainPer7d))
	}
	ns := prune(b.perName[name], now.Add(-7*24*time.Hour))
	b.perName[name] = ns
	if len(ns) >= b.l.DuplicatesPer7d {
		hold(ns[len(ns)-b.l.DuplicatesPer7d].Add(7*24*time.Hour).Sub(now), fmt.Sprintf("duplicate certificates per 7 days (%d)", b.l.DuplicatesPer7d))
	}
	fs := prune(b.failed[name], now.Add(-time.Hour))
	b.failed[name] = fs
	if len(fs) >= b.l.FailedValidationsPerNameHour {
		hold(fs[len(fs)-b.l.FailedValidationsPerNameHour].Add(time.Hour).Sub(now), fmt.Sprintf("failed validations per name per hour (%d)", b.l.FailedValidationsPerNameHour))
	}
	if w > 0 {
		b.queued[name] = true
	} else {
		delete(b.queued, name)
	}
	return w, reason
}

func (b *budgets) recordOrder(at time.Time) {
	b.mu.Lock()
	b.orders = append(b.orders, at)
	b.mu.Unlock()
}

func (b *budgets) recordCertificate(name string, at time.Time) {
	b.mu.Lock()
	dom := registeredDomain(name)
	b.perDom[dom] = append(b.perDom[dom], at)
	b.perName[name] = append(b.perName[name], at)
	b.mu.Unlock()
}

func (b *budgets) recordFailedValidation(name string, at time.Time) {
	b.mu.Lock()
	b.failed[name] = append(b.failed[name], at)
	b.mu.Unlock()
}

func (b *budgets) rateLimited(until time.Time) {
	b.mu.Lock()
	if until.After(b.limited) {
		b.limited = until
	}
	b.mu.Unlock()
}

func (b *budgets) forget(name string) {
	b.mu.Lock()
	delete(b.queued, name)
	delete(b.failed, name)
	b.mu.Unlock()
}

// usage returns each budget's usage against its limit: for the per-domain
// and per-name budgets, the most used one.
func (b *budgets) usage() []budgetUsage {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	count := func(ts []time.Time, since time.Time) int64 {
		n := int64(0)
		for _, t := range ts {
			if !t.Before(since) {
				n++
			}
		}
		return n
	}
	maxOf := func(m map[string][]time.Time, since time.Time) int64 {
		var top int64
		for k, ts := range m {
			c := count(ts, since)
			if c == 0 {
				delete(m, k)
			}
			top = max(top, c)
		}
		return top
	}
	return []budgetUsage{
		{"acme_orders_3h", count(b.orders, now.Add(-3*time.Hour)), int64(b.l.OrdersPer3h)},
		{"acme_certs_per_domain_7d", maxOf(b.perDom, now.Add(-7*24*time.Hour)), int64(b.l.CertsPerDomainPer7d)},
		{"acme_duplicates_7d", maxOf(b.perName, now.Add(-7*24*time.Hour)), int64(b.l.DuplicatesPer7d)},
		{"acme_failed_validations_1h", maxOf(b.failed, now.Add(-time.Hour)), int64(b.l.FailedValidationsPerNameHour)},
	}
}

// queuedCount is how many names wait for budget.
func (b *budgets) queuedCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.queued)
}
