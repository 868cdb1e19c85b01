package status

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"gatehouse/internal/store"
)

// TestEmailUnsubscribeTombstone: an address that unsubscribed is refused
// by the operator's add and import (the import names the line) until the
// operator says the person agreed again, and the person's own confirmed
// subscription lifts the tombstone.
func TestEmailUnsubscribeTombstone(t *testing.T) {
	mf := newMailFixture(t, nil)
	ctx := context.Background()
	const addr = "leaver@example.org"
	mf.subscribeAndConfirm(t, addr)
	unsubscribe := func() {
		t.Helper()
		n := len(mf.smtp.Messages())
		mf.clock.Add(time.Minute)
		if _, err := mf.p.OpenIncident(ctx, IncidentRequest{Name: fmt.Sprintf("Incident %d", n), Body: "x"}); err != nil {
			t.Fatal(err)
		}
		mf.drained(t)
		got := mf.mails(t, n)
		if len(got) != 1 {
			t.Fatalf("%d notifications, want 1", len(got))
		}
		if code, _ := mf.post(t, got[0].link(t, "/subscribe/unsubscribe"), url.Values{"List-Unsubscribe": {"One-Click"}}); code != 200 {
			t.Fatalf("unsubscribe: %d", code)
		}
	}
	unsubscribe()
	kv, err := mf.st.Get(ctx, keyMailUnsub+subID(addr))
	if err != nil || strings.Contains(string(kv.Value), addr) {
		t.Fatalf("tombstone: %v %q (it must exist and hold no address)", err, kv.Value)
	}
	var in *InputError
	_, err = mf.p.AddEmailSubscriber(ctx, EmailSubscriberRequest{Email: addr})
	if !errors.As(err, &in) || in.Field != "email" || !strings.Contains(err.Error(), "unsubscribed on") {
		t.Fatalf("add of an unsubscribed address: %v", err)
	}
	err = mf.p.AddEmailSubscribers(ctx, []EmailSubscriberRequest{{Email: "new@example.org"}, {Email: addr}})
	if !errors.As(err, &in) || in.Field != "subscribers[1].email" {
		t.Fatalf("import with an unsubscribed address: %v", err)
	}
	for _, a := range []string{addr, "new@example.org"} {
		if err := mf.p.EmailSubscribers(ctx, a, func(EmailSubscriber) error { return nil }); err == nil {
			t.Errorf("%s stored although the import was refused", a)
		}
	}
	if _, err := mf.p.AddEmailSubscriber(ctx, EmailSubscriberRequest{Email: addr, Resubscribe: true}); err != nil {
		t.Fatalf("add with resubscribe: %v", err)
	}
	if _, err := mf.st.Get(ctx, keyMailUnsub+subID(addr)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("tombstone after resubscribe: %v, want gone", err)
	}
	// The person leaves again, then comes back through the form.
	unsubscribe()
	mf.clock.Add(time.Minute)
	mf.subscribeAndConfirm(t, addr)
	if _, err := mf.st.Get(ctx, keyMailUnsub+subID(addr)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("tombstone after the person's confirmation: %v, want gone", err)
	}
}

// TestEmailSubscribeLimitFleetWide: two portals on one store share the
// per-address count (3 an hour here): the fourth request for an address is
// refused whichever node gets it, and the counts of an hour that ended are
// swept.
func TestEmailSubscribeLimitFleetWide(t *testing.T) {
	mf := newMailFixture(t, nil) // per_address_per_hour: the default, 3
	cfg := testStatus
	ec := mf.p.mail.conf().cfg
	cfg.Email = &ec
	cfg.Email.SMTP.PasswordFile, cfg.Email.SMTP.CAFile = "", "" // this node never sends
	p2 := New(cfg, nil, mf.h.source, Options{Logger: testLogger(t), Now: mf.clock.Now, Store: mf.st, IDs: seqIDs(), Interval: time.Hour})
	if err := p2.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p2.Close() })
	web2 := httptest.NewServer(p2)
	t.Cleanup(web2.Close)

	nodes := []string{mf.web.URL, web2.URL}
	for i := range 4 {
		code, _ := mf.post(t, nodes[i%2]+"/subscribe", url.Values{"email": {"eager@example.org"}})
		want := http.StatusOK
		if i == 3 {
			want = http.StatusTooManyRequests
		}
		if code != want {
			t.Fatalf("request %d (node %d): %d, want %d", i+1, i%2+1, code, want)
		}
	}
	kvs, _, err := mf.st.List(context.Background(), keyMailRate, "", 0)
	if err != nil || len(kvs) != 2 {
		t.Fatalf("rate counts in the store: %d (%v), want 2 (one client, one address)", len(kvs), err)
	}
	mf.clock.Add(2 * time.Hour)
	mf.p.mail.sweepRates(context.Background(), mf.clock.Now())
	if kvs, _, _ := mf.st.List(context.Background(), keyMailRate, "", 0); len(kvs) != 0 {
		t.Errorf("%d rate counts left after their hour ended, want 0", len(kvs))
	}
	if code, _ := mf.post(t, web2.URL+"/subscribe", url.Values{"email": {"eager@example.org"}}); code != http.StatusOK {
		t.Errorf("the next hour: %d, want 200", code)
	}
}
