// Package budget keeps an ACME CA's rate limits as budgets that Gatehouse
// spends before the CA refuses: new orders per account per 3 hours,
// certificates per registered domain per 7 days, duplicate certificates
// (the same exact set of names) per 7 days and failed validations per name
// per hour, plus the CA's own rateLimited answers with their Retry-After.
//
// One Budgets instance serves one CA. Check says whether an order may be
// placed now and, if not, how long until the budget admits it and which
// limit holds it back; the Record methods spend the budget. Each budget is a
// sliding window: events older than the window are dropped, and at most
// limit events are kept per key, so memory is bounded by the number of keys
// active in the window. Events may be recorded at any past time (a restart
// replays the stored order, certificate and failure records): an event is
// counted exactly while it is inside its window as seen from the clock.
//
// Certificates per registered domain and duplicates are counted across
// accounts, as Let's Encrypt counts them; orders are counted per account,
// failed validations per name.
package budget

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/publicsuffix"
)

// Limits are the budgets of one CA. A zero or negative field disables that
// budget (it is still counted for Usage).
type Limits struct {
	OrdersPer3h                  int // new orders per account per 3 hours
	CertsPerDomainPer7d          int // certificates per registered domain per 7 days
	DuplicatesPer7d              int // certificates for one exact set of names per 7 days
	FailedValidationsPerNameHour int // failed authorizations per name per hour
}

// DefaultLimits are Let's Encrypt's published defaults.
var DefaultLimits = Limits{
	OrdersPer3h:                  300,
	CertsPerDomainPer7d:          50,
	DuplicatesPer7d:              5,
	FailedValidationsPerNameHour: 5,
}

// Budget names: Usage.Name, the capacity registry's rows, and the prefix of
// Check's reason.
const (
	Orders            = "acme_orders_3h"
	CertsPerDomain    = "acme_certs_per_domain_7d"
	Duplicates        = "acme_duplicates_7d"
	FailedValidations = "acme_failed_validations_1h"
	RateLimited       = "acme_rate_limited" // the CA's rateLimited problem
)

// Windows of the budgets.
const (
	OrdersWindow            = 3 * time.Hour
	CertsPerDomainWindow    = 7 * 24 * time.Hour
	DuplicatesWindow        = 7 * 24 * time.Hour
	FailedValidationsWindow = time.Hour
)

// Usage is one budget's busiest key: the account, registered domain, name
// set or name closest to its limit, and how much of it is used.
type Usage struct {
	Name  string // budget: Orders, CertsPerDomain, Duplicates, FailedValidations
	Key   string // the busiest account, domain, name set or name ("" when unused)
	Used  int64
	Limit int64 // 0: the budget is disabled
}

// Budgets holds one CA's budgets. It is safe for concurrent use.
type Budgets struct {
	lim Limits
	now func() time.Time

	mu      sync.Mutex        // guards everything below
	orders  window            // by account
	domains window            // by registered domain
	dups    window            // by exact name set (names sorted, comma-joined)
	fails   window            // by name
	limited map[string]uint32 // account → CA's Retry-After, Unix seconds
	held    map[string]held   // name set → what holds it back
	heldOps int               // holds since held was last pruned
}

type held struct {
	account string
	budget  string
	until   uint32
}

// New returns empty budgets with limits l and clock now (nil: time.Now).
func New(l Limits, now func() time.Time) *Budgets {
	if now == nil {
		now = time.Now
	}
	return &Budgets{
		lim:     l,
		now:     now,
		orders:  newWindow(OrdersWindow, l.OrdersPer3h),
		domains: newWindow(CertsPerDomainWindow, l.CertsPerDomainPer7d),
		dups:    newWindow(DuplicatesWindow, l.DuplicatesPer7d),
		fails:   newWindow(FailedValidationsWindow, l.FailedValidationsPerNameHour),
		limited: map[string]uint32{},
		held:    map[string]held{},
	}
}

// Limits returns the budgets' limits.
func (b *Budgets) Limits() Limits { return b.lim }

// normalize lower-cases names, drops a trailing dot, removes duplicates and
// sorts them. A name already in that form is not copied.
func normalize(names []string) []string {
	out := make([]string, 0, len(names))
	for _, n := range names {
		n = strings.TrimSuffix(n, ".")
		out = append(out, strings.ToLower(n))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// setKey is the duplicate budget's key: the sorted names joined by commas
// (for one name, the name itself, without a copy).
func setKey(sorted []string) string {
	if len(sorted) == 1 {
		return sorted[0]
	}
	return strings.Join(sorted, ",")
}

// RegisteredDomain returns the registered domain (eTLD+1 from the public
// suffix list) of a name; a wildcard counts for its base name. A name that
// has none (a public suffix itself, an IP literal, a single label) is its
// own registered domain.
func RegisteredDomain(name string) string {
	name = strings.TrimPrefix(strings.TrimSuffix(strings.ToLower(name), "."), "*.")
	d, err := publicsuffix.EffectiveTLDPlusOne(name)
	if err != nil {
		return name
	}
	return d
}

func domainsOf(sorted []string) []string {
	ds := make([]string, 0, len(sorted))
	for _, n := range sorted {
		ds = append(ds, RegisteredDomain(n))
	}
	slices.Sort(ds)
	return slices.Compact(ds)
}

// hold is one limit's answer: how long it holds the order back and why.
type hold struct {
	wait   time.Duration
	reason string
	budget string
}

func (h *hold) max(wait time.Duration, budget, reason func() string) {
	if wait > h.wait {
		h.wait, h.budget, h.reason = wait, budget(), reason()
	}
}

func str(s string) func() string { return func() string { return s } }

// Check reports whether a new order for names by account may be placed now:
// wait 0 means go now; otherwise wait is how long until every budget admits
// it and reason names the limit holding it longest, with its usage and
// budget. All four budgets and the CA's Retry-After apply.
func (b *Budgets) Check(account string, names []string) (wait time.Duration, reason string) {
	return b.check(account, names, false, false)
}

// CheckRenewal is Check for the renewal of a certificate with the same exact
// set of names. With ari true the renewal follows the CA's ACME Renewal
// Information (the order names the certificate it replaces and is placed
// inside the suggested window): Let's Encrypt exempts such renewals from all
// its limits, so only the CA's own rateLimited Retry-After holds it back.
// Without ARI a renewal is exempt from the certificates-per-domain budget
// (the CA's renewal exemption; the certificate still counts towards it) and
// subject to the others.
func (b *Budgets) CheckRenewal(account string, names []string, ari bool) (wait time.Duration, reason string) {
	return b.check(account, names, true, ari)
}

func (b *Budgets) check(account string, names []string, renewal, ari bool) (time.Duration, string) {
	now := b.now()
	sorted := normalize(names)
	key := setKey(sorted)
	b.mu.Lock()
	defer b.mu.Unlock()
	var h hold
	if until, ok := b.limited[account]; ok {
		if w := secTime(until).Sub(now); w > 0 {
			h.max(w, str(RateLimited), func() string {
				return fmt.Sprintf("%s: the CA answered rateLimited for account %q; retry after %s",
					RateLimited, account, secTime(until).UTC().Format(time.RFC3339))
			})
		} else {
			delete(b.limited, account)
		}
	}
	if !ari {
		b.orders.hold(&h, Orders, "account", account, now)
		if !renewal {
			for _, d := range domainsOf(sorted) {
				b.domains.hold(&h, CertsPerDomain, "registered domain", d, now)
			}
		}
		b.dups.hold(&h, Duplicates, "name set", key, now)
		for _, n := range sorted {
			b.fails.hold(&h, FailedValidations, "name", n, now)
		}
	}
	if h.wait <= 0 {
		delete(b.held, key)
		return 0, ""
	}
	b.held[key] = held{account: account, budget: h.budget, until: ceilSec(now.Add(h.wait))}
	if b.heldOps++; b.heldOps >= len(b.held)+1024 {
		b.heldOps = 0
		b.pruneHeldLocked(ceilSec(now))
	}
	return h.wait, h.reason
}

// RecordOrder spends one order of account's budget at at.
func (b *Budgets) RecordOrder(account string, at time.Time) {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.orders.record(account, at, now)
}

// RecordCertificate spends the certificates-per-domain budget of every
// registered domain among names (once per domain) and the duplicate budget
// of the exact set of names, at at. account is accepted for symmetry: the
// CA counts these across accounts.
func (b *Budgets) RecordCertificate(account string, names []string, at time.Time) {
	now := b.now()
	sorted := normalize(names)
	key := setKey(sorted)
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, d := range domainsOf(sorted) {
		b.domains.record(d, at, now)
	}
	b.dups.record(key, at, now)
}

// RecordFailedValidation spends one failed validation of name at at.
func (b *Budgets) RecordFailedValidation(name string, at time.Time) {
	now := b.now()
	n := normalize([]string{name})[0]
	b.mu.Lock()
	defer b.mu.Unlock()
	b.fails.record(n, at, now)
}

// RateLimited records the CA's rateLimited problem for account: every order
// of that account waits until until (its Retry-After), whatever the budgets
// say. A later until extends the wait; an earlier one does not shorten it.
func (b *Budgets) RateLimited(account string, until time.Time) {
	u := ceilSec(until)
	b.mu.Lock()
	defer b.mu.Unlock()
	if u > b.limited[account] {
		b.limited[account] = u
	}
}

// Usage returns each budget's busiest key and its use, in the order
// Orders, CertsPerDomain, Duplicates, FailedValidations. It walks every
// key (and drops the expired ones): call it at the pace of the capacity
// registry's probes, not per order.
func (b *Budgets) Usage() []Usage {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	return []Usage{
		b.orders.busiest(Orders, b.lim.OrdersPer3h, now),
		b.domains.busiest(CertsPerDomain, b.lim.CertsPerDomainPer7d, now),
		b.dups.busiest(Duplicates, b.lim.DuplicatesPer7d, now),
		b.fails.busiest(FailedValidations, b.lim.FailedValidationsPerNameHour, now),
	}
}

// Held is an order a budget held back: the exact name set (comma-joined),
// the account that asked, the budget and when it admits the order.
type Held struct {
	Names   string
	Account string
	Budget  string
	Until   time.Time
}

// Queued returns up to max orders held back by a budget whose admission
// time has not come yet, soonest first, and how many there are in all.
// An order is listed from the Check that held it until a Check admits it,
// its time passes, or Forget.
func (b *Budgets) Queued(max int) ([]Held, int) {
	now := ceilSec(b.now())
	b.mu.Lock()
	defer b.mu.Unlock()
	b.pruneHeldLocked(now)
	var out []Held
	for k, h := range b.held {
		out = append(out, Held{Names: k, Account: h.account, Budget: h.budget, Until: secTime(h.until)})
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Until.Equal(out[j].Until) {
			return out[i].Until.Before(out[j].Until)
		}
		return out[i].Names < out[j].Names
	})
	total := len(out)
	if max >= 0 && len(out) > max {
		out = out[:max]
	}
	return out, total
}

// pruneHeldLocked drops the held orders whose admission time has come.
func (b *Budgets) pruneHeldLocked(now uint32) {
	for k, h := range b.held {
		if h.until <= now {
			delete(b.held, k)
		}
	}
}

// Forget drops the held order for names from Queued (the hostname was
// removed, or the order is no longer wanted).
func (b *Budgets) Forget(names []string) {
	key := setKey(normalize(names))
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.held, key)
}

// Reset forgets every recorded event and the CA's Retry-After answers (the
// held orders stay listed until a Check decides again). A caller that keeps
// the events elsewhere replays them after a Reset.
func (b *Budgets) Reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.orders = newWindow(OrdersWindow, b.lim.OrdersPer3h)
	b.domains = newWindow(CertsPerDomainWindow, b.lim.CertsPerDomainPer7d)
	b.dups = newWindow(DuplicatesWindow, b.lim.DuplicatesPer7d)
	b.fails = newWindow(FailedValidationsWindow, b.lim.FailedValidationsPerNameHour)
	clear(b.limited)
}
