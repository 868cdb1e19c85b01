package budget

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// clock is a fake clock for New.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newTest(l Limits) (*Budgets, *clock) {
	c := &clock{t: t0}
	return New(l, c.now), c
}

func TestOrders(t *testing.T) {
	b, c := newTest(Limits{OrdersPer3h: 3})
	for i := 0; i < 3; i++ {
		if w, r := b.Check("acct", []string{"a.example.com"}); w != 0 {
			t.Fatalf("order %d: held %v (%s), want go", i, w, r)
		}
		b.RecordOrder("acct", c.now())
		c.add(10 * time.Minute)
	}
	// 3 of 3 used; the first (at t0) leaves at t0+3h; now is t0+30m.
	w, reason := b.Check("acct", []string{"a.example.com"})
	if w != 150*time.Minute {
		t.Errorf("wait = %v, want 2h30m", w)
	}
	for _, s := range []string{Orders, `"acct"`, "3 of 3", "3h"} {
		if !strings.Contains(reason, s) {
			t.Errorf("reason %q does not mention %q", reason, s)
		}
	}
	// Another account is not held.
	if w, _ := b.Check("other", []string{"a.example.com"}); w != 0 {
		t.Errorf("other account held %v", w)
	}
	c.add(w - time.Second)
	if w, _ := b.Check("acct", []string{"a.example.com"}); w != time.Second {
		t.Errorf("a second before: wait %v, want 1s", w)
	}
	c.add(time.Second)
	if w, r := b.Check("acct", []string{"a.example.com"}); w != 0 {
		t.Errorf("at the boundary: held %v (%s)", w, r)
	}
}

func TestCertsPerDomain(t *testing.T) {
	b, c := newTest(Limits{CertsPerDomainPer7d: 2})
	// Two names of one registered domain in one certificate count once.
	b.RecordCertificate("acct", []string{"a.shop.example.co.uk", "b.example.co.uk"}, c.now())
	if w, r := b.Check("acct", []string{"c.example.co.uk"}); w != 0 {
		t.Fatalf("1 of 2: held %v (%s)", w, r)
	}
	c.add(time.Hour)
	b.RecordCertificate("acct2", []string{"*.example.co.uk"}, c.now()) // another account, a wildcard
	c.add(time.Hour)
	w, reason := b.Check("acct", []string{"c.example.co.uk", "other.example"})
	if w != 7*24*time.Hour-2*time.Hour {
		t.Errorf("wait = %v, want 7d - 2h", w)
	}
	for _, s := range []string{CertsPerDomain, `"example.co.uk"`, "2 of 2", "7d"} {
		if !strings.Contains(reason, s) {
			t.Errorf("reason %q does not mention %q", reason, s)
		}
	}
	// Other registered domains, and a public suffix that is a domain of its
	// own (github.io), are not held.
	for _, n := range []string{"example.com", "x.github.io", "example.co"} {
		if w, _ := b.Check("acct", []string{n}); w != 0 {
			t.Errorf("%s held %v", n, w)
		}
	}
	// A renewal is exempt from this budget.
	if w, r := b.CheckRenewal("acct", []string{"b.example.co.uk", "a.shop.example.co.uk"}, false); w != 0 {
		t.Errorf("renewal held %v (%s)", w, r)
	}
}

func TestRegisteredDomain(t *testing.T) {
	tests := map[string]string{
		"shop.uni-d.edu":        "uni-d.edu",
		"WWW.Example.COM.":      "example.com",
		"a.b.example.co.uk":     "example.co.uk",
		"*.example.org":         "example.org",
		"user.github.io":        "user.github.io",
		"localhost":             "localhost",
		"192.0.2.1":             "192.0.2.1",
		"co.uk":                 "co.uk",
		"xn--bcher-kva.example": "xn--bcher-kva.example",
	}
	for in, want := range tests {
		if got := RegisteredDomain(in); got != want {
			t.Errorf("RegisteredDomain(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDuplicates(t *testing.T) {
	b, c := newTest(Limits{DuplicatesPer7d: 2, CertsPerDomainPer7d: 100})
	b.RecordCertificate("acct", []string{"b.example.com", "a.example.com"}, c.now())
	b.RecordCertificate("acct", []string{"A.example.com.", "b.example.com", "a.example.com"}, c.now().Add(time.Hour))
	c.add(2 * time.Hour)
	w, reason := b.Check("acct", []string{"a.example.com", "B.EXAMPLE.COM"})
	if w != 7*24*time.Hour-2*time.Hour {
		t.Errorf("same set in another order and case: wait %v, want 7d - 2h", w)
	}
	if !strings.Contains(reason, Duplicates) || !strings.Contains(reason, `"a.example.com,b.example.com"`) {
		t.Errorf("reason %q", reason)
	}
	// A renewal without ARI is subject to it.
	if w, _ := b.CheckRenewal("acct", []string{"a.example.com", "b.example.com"}, false); w == 0 {
		t.Error("a renewal without ARI passed the duplicate budget")
	}
	// A subset or a superset is another set.
	for _, set := range [][]string{{"a.example.com"}, {"a.example.com", "b.example.com", "c.example.com"}} {
		if w, _ := b.Check("acct", set); w != 0 {
			t.Errorf("%v held %v", set, w)
		}
	}
}

func TestFailedValidations(t *testing.T) {
	b, c := newTest(Limits{FailedValidationsPerNameHour: 2})
	b.RecordFailedValidation("a.example.com", c.now())
	if w, _ := b.Check("acct", []string{"a.example.com"}); w != 0 {
		t.Fatalf("1 of 2 held %v", w)
	}
	c.add(20 * time.Minute)
	b.RecordFailedValidation("A.example.com", c.now())
	w, reason := b.Check("acct", []string{"b.example.com", "a.example.com"})
	if w != 40*time.Minute {
		t.Errorf("wait = %v, want 40m", w)
	}
	if !strings.Contains(reason, FailedValidations) || !strings.Contains(reason, "2 of 2") || !strings.Contains(reason, "1h") {
		t.Errorf("reason %q", reason)
	}
	if w, _ := b.Check("acct", []string{"b.example.com"}); w != 0 {
		t.Errorf("another name held %v", w)
	}
}

func TestRateLimited(t *testing.T) {
	b, c := newTest(DefaultLimits)
	b.RateLimited("acct", t0.Add(90*time.Second))
	b.RateLimited("acct", t0.Add(30*time.Second)) // does not shorten
	w, reason := b.Check("acct", []string{"a.example.com"})
	if w != 90*time.Second || !strings.Contains(reason, RateLimited) || !strings.Contains(reason, `"acct"`) {
		t.Errorf("Check = %v %q, want 90s and the CA's rateLimited", w, reason)
	}
	// ARI renewals are exempt from the budgets, not from the CA's answer.
	if w, _ := b.CheckRenewal("acct", []string{"a.example.com"}, true); w != 90*time.Second {
		t.Errorf("ARI renewal: wait %v, want 90s", w)
	}
	if w, _ := b.Check("other", []string{"a.example.com"}); w != 0 {
		t.Errorf("another account held %v", w)
	}
	c.add(90 * time.Second)
	if w, r := b.Check("acct", []string{"a.example.com"}); w != 0 {
		t.Errorf("after Retry-After: held %v (%s)", w, r)
	}
	// A Retry-After with a fraction of a second is rounded up, never early.
	b.RateLimited("acct", c.now().Add(1500*time.Millisecond))
	if w, _ := b.Check("acct", nil); w != 2*time.Second {
		t.Errorf("fractional Retry-After: wait %v, want 2s", w)
	}
}

func TestARIRenewalExempt(t *testing.T) {
	b, c := newTest(Limits{OrdersPer3h: 1, CertsPerDomainPer7d: 1, DuplicatesPer7d: 1, FailedValidationsPerNameHour: 1})
	names := []string{"a.example.com"}
	b.RecordOrder("acct", c.now())
	b.RecordCertificate("acct", names, c.now())
	b.RecordFailedValidation(names[0], c.now())
	if w, _ := b.Check("acct", names); w == 0 {
		t.Fatal("every budget spent, yet Check says go")
	}
	if w, _ := b.CheckRenewal("acct", names, false); w == 0 {
		t.Fatal("renewal without ARI passed spent order, duplicate and failure budgets")
	}
	if w, r := b.CheckRenewal("acct", names, true); w != 0 {
		t.Errorf("ARI renewal held %v (%s)", w, r)
	}
}

// The longest hold wins and its reason is the one reported.
func TestLongestHoldWins(t *testing.T) {
	b, c := newTest(Limits{OrdersPer3h: 1, FailedValidationsPerNameHour: 1})
	b.RecordOrder("acct", c.now())
	b.RecordFailedValidation("a.example.com", c.now())
	w, reason := b.Check("acct", []string{"a.example.com"})
	if w != 3*time.Hour || !strings.HasPrefix(reason, Orders) {
		t.Errorf("Check = %v %q, want 3h for %s", w, reason, Orders)
	}
	c.add(2*time.Hour + 30*time.Minute)
	b.RateLimited("acct", c.now().Add(time.Hour))
	w, reason = b.Check("acct", []string{"a.example.com"})
	if w != time.Hour || !strings.HasPrefix(reason, RateLimited) {
		t.Errorf("Check = %v %q, want 1h for %s", w, reason, RateLimited)
	}
}

// A restart replays the stored records at their own times: events outside
// the window are ignored, the others count until they leave, in any order.
func TestReplay(t *testing.T) {
	b, c := newTest(Limits{OrdersPer3h: 3, CertsPerDomainPer7d: 2})
	now := c.now()
	for _, ago := range []time.Duration{5 * time.Hour, 10 * time.Minute, 3*time.Hour + time.Second, 2 * time.Hour, time.Hour} {
		b.RecordOrder("acct", now.Add(-ago))
	}
	// In the window: 2h, 1h, 10m ago. The 2h one leaves in 1h.
	if w, _ := b.Check("acct", nil); w != time.Hour {
		t.Errorf("after replay: wait %v, want 1h", w)
	}
	// A record exactly 3h old has just left.
	b2, c2 := newTest(Limits{OrdersPer3h: 1})
	b2.RecordOrder("acct", c2.now().Add(-3*time.Hour))
	if w, _ := b2.Check("acct", nil); w != 0 {
		t.Errorf("an order 3h old still counts: wait %v", w)
	}
	// Certificates 8 and 6 days old: one counts, for one more day.
	b.RecordCertificate("acct", []string{"x.example.com"}, now.Add(-8*24*time.Hour))
	b.RecordCertificate("acct", []string{"y.example.com"}, now.Add(-6*24*time.Hour))
	b.RecordCertificate("acct", []string{"z.example.com"}, now.Add(-6*24*time.Hour))
	if w, _ := b.Check("other", []string{"new.example.com"}); w != 24*time.Hour {
		t.Errorf("certificates per domain after replay: wait %v, want 24h", w)
	}
	if diff := cmp.Diff(b.Usage()[1], Usage{Name: CertsPerDomain, Key: "example.com", Used: 2, Limit: 2}); diff != "" {
		t.Errorf("Usage (-got +want):\n%s", diff)
	}
}

func TestUsage(t *testing.T) {
	b, c := newTest(DefaultLimits)
	for i := 0; i < 7; i++ {
		b.RecordOrder("busy", c.now())
	}
	b.RecordOrder("idle", c.now())
	b.RecordCertificate("busy", []string{"a.example.com"}, c.now())
	b.RecordCertificate("busy", []string{"b.example.com"}, c.now())
	b.RecordCertificate("busy", []string{"a.example.org"}, c.now())
	b.RecordCertificate("busy", []string{"a.example.org"}, c.now())
	b.RecordFailedValidation("f.example.net", c.now())
	want := []Usage{
		{Name: Orders, Key: "busy", Used: 7, Limit: 300},
		{Name: CertsPerDomain, Key: "example.com", Used: 2, Limit: 50},
		{Name: Duplicates, Key: "a.example.org", Used: 2, Limit: 5},
		{Name: FailedValidations, Key: "f.example.net", Used: 1, Limit: 5},
	}
	if diff := cmp.Diff(b.Usage(), want); diff != "" {
		t.Errorf("Usage (-got +want):\n%s", diff)
	}
	// An hour later the failures have left; three hours later the orders.
	c.add(3 * time.Hour)
	want[0] = Usage{Name: Orders, Limit: 300}
	want[3] = Usage{Name: FailedValidations, Limit: 5}
	if diff := cmp.Diff(b.Usage(), want); diff != "" {
		t.Errorf("Usage 3h later (-got +want):\n%s", diff)
	}
	if n := len(b.orders.keys) + len(b.fails.keys); n != 0 {
		t.Errorf("%d expired keys kept", n)
	}
}

func TestDisabledLimit(t *testing.T) {
	b, c := newTest(Limits{})
	for i := 0; i < 1000; i++ {
		b.RecordOrder("acct", c.now())
		b.RecordCertificate("acct", []string{"a.example.com"}, c.now())
		b.RecordFailedValidation("a.example.com", c.now())
	}
	if w, r := b.Check("acct", []string{"a.example.com"}); w != 0 {
		t.Errorf("disabled budgets held %v (%s)", w, r)
	}
	u := b.Usage()
	if u[0].Limit != 0 || u[0].Used != 64 {
		t.Errorf("disabled orders budget: %+v, want use counted up to 64 and no limit", u[0])
	}
}

// Memory is bounded per key: a key keeps at most limit events.
func TestBoundedPerKey(t *testing.T) {
	b, c := newTest(Limits{OrdersPer3h: 5})
	for i := 0; i < 10000; i++ {
		b.RecordOrder("acct", c.now().Add(-time.Duration(i)*time.Second))
	}
	if n := len(b.orders.live("acct", c.now())); n != 5 {
		t.Errorf("%d events kept, want 5", n)
	}
	// The five newest are kept: the wait is until the oldest of them leaves.
	if w, _ := b.Check("acct", nil); w != 3*time.Hour-4*time.Second {
		t.Errorf("wait %v, want 3h - 4s", w)
	}
}

// Keys never touched again are swept as records go on.
func TestSweep(t *testing.T) {
	b, c := newTest(Limits{FailedValidationsPerNameHour: 5})
	for i := 0; i < 5000; i++ {
		b.RecordFailedValidation(fmt.Sprintf("n%d.example", i), c.now())
	}
	c.add(2 * time.Hour)
	for i := 0; i < 7000; i++ {
		b.RecordFailedValidation("same.example", c.now())
	}
	if n := len(b.fails.keys); n != 1 {
		t.Errorf("%d keys kept, want 1 after the sweep", n)
	}
}

func TestQueued(t *testing.T) {
	b, c := newTest(Limits{OrdersPer3h: 1, FailedValidationsPerNameHour: 1})
	b.RecordFailedValidation("b.example.com", c.now())
	c.add(time.Minute)
	b.RecordOrder("acct", c.now())
	b.Check("acct", []string{"a.example.com"}) // orders: 3h
	b.Check("acct", []string{"b.example.com"}) // orders 3h, failure 59m: 3h
	b.Check("other", []string{"b.example.com"})
	got, total := b.Queued(10)
	want := []Held{
		{Names: "b.example.com", Account: "other", Budget: FailedValidations, Until: c.now().Add(59 * time.Minute)},
		{Names: "a.example.com", Account: "acct", Budget: Orders, Until: c.now().Add(3 * time.Hour)},
	}
	if diff := cmp.Diff(got, want); diff != "" || total != 2 {
		t.Errorf("Queued = %d (-got +want):\n%s", total, diff)
	}
	if got, total := b.Queued(1); len(got) != 1 || total != 2 {
		t.Errorf("Queued(1) = %v, %d", got, total)
	}
	b.Forget([]string{"A.example.com"})
	c.add(time.Hour)
	if got, total := b.Queued(10); len(got) != 0 || total != 0 {
		t.Errorf("after Forget and an hour: %v, %d", got, total)
	}
}

func TestConcurrent(t *testing.T) {
	b, _ := newTest(DefaultLimits)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				name := fmt.Sprintf("h%d.c%d.example.com", i, g)
				b.Check("acct", []string{name})
				b.RecordOrder("acct", t0)
				b.RecordCertificate("acct", []string{name}, t0)
				b.RecordFailedValidation(name, t0)
				if i%50 == 0 {
					b.Usage()
					b.Queued(5)
					b.RateLimited("acct", t0.Add(time.Second))
				}
			}
		}()
	}
	wg.Wait()
	if u := b.Usage(); u[0].Used != 300 || u[1].Used != 50 {
		t.Errorf("Usage after concurrent records: %+v", u)
	}
}

// The state for a million names, each with one certificate and one order in
// the window, stays compact.
func TestMemory(t *testing.T) {
	n := 1_000_000
	if raceEnabled {
		n = 100_000
	}
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("www.customer%07d.example", i)
	}
	before := heapInUse()
	b, c := newTest(DefaultLimits)
	for i, name := range names {
		at := c.now().Add(-time.Duration(i%600000) * time.Second) // spread over a week
		b.RecordCertificate("acct", []string{name}, at)
		b.RecordOrder("acct", at)
	}
	used := heapInUse() - before
	perName := float64(used) / float64(n)
	t.Logf("%d names, one certificate each in the window: %.1f MiB (%.0f bytes per name; names themselves are the caller's)",
		n, float64(used)/(1<<20), perName)
	if perName > 130 {
		t.Errorf("%.0f bytes per name, want at most 130", perName)
	}
	runtime.KeepAlive(b)
	runtime.KeepAlive(names)
}

func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// Held orders nobody asks about again are pruned once admitted.
func TestHeldPruned(t *testing.T) {
	b, c := newTest(Limits{FailedValidationsPerNameHour: 1})
	for i := 0; i < 3000; i++ {
		name := fmt.Sprintf("n%d.example", i)
		b.RecordFailedValidation(name, c.now())
		if w, _ := b.Check("acct", []string{name}); w != time.Hour {
			t.Fatalf("wait %v", w)
		}
	}
	c.add(time.Hour)
	b.RecordFailedValidation("last.example", c.now())
	for i := 0; i < 5000; i++ {
		b.Check("acct", []string{"last.example"})
	}
	b.mu.Lock()
	n := len(b.held)
	b.mu.Unlock()
	if n != 1 {
		t.Errorf("%d held orders kept, want 1", n)
	}
}
