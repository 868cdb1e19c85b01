package status

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestRevisionsOfDeletedKeysForgotten: the portal remembers the revision
// of every store key it holds, to skip its own writes in the watch. Keys
// that come and go for good (the bounded delivery log, the observations
// of nodes that stopped, removed subscribers) must not stay remembered,
// or memory grows with every webhook attempt ever made.
func TestRevisionsOfDeletedKeysForgotten(t *testing.T) {
	f := newFixture(t, "", Options{})
	ctx := context.Background()
	sub, err := f.p.AddSubscriber(ctx, SubscriberRequest{URL: "http://127.0.0.1:1/hook"})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.p.RemoveSubscriber(ctx, sub.ID); err != nil {
		t.Fatal(err)
	}
	n := 3 * deliveryLogSize
	var lastKey string
	for i := range n {
		d := Delivery{ID: fmt.Sprintf("d%011d", i), Subscriber: "s", Event: "component_update", Attempt: 1, OK: true,
			Final: true, At: t0.Add(time.Duration(i+1) * time.Second)}
		f.p.hooks.record(d)
		lastKey = deliveryKey(d, f.p.hooks.seq.Load())
	}
	// The watch has applied every change once it has the last attempt.
	held := func() (int, bool, bool) {
		f.p.mu.Lock()
		defer f.p.mu.Unlock()
		_, last := f.p.revs[lastKey]
		_, removed := f.p.revs[keyWebhooks+sub.ID]
		return len(f.p.revs), last, removed
	}
	waitFor(t, "the watch to apply the last delivery", func() bool { _, last, _ := held(); return last })
	got, _, removed := held()
	if limit := deliveryLogSize + 50; got > limit {
		t.Errorf("revisions of %d keys remembered after %d delivery attempts (log of %d), want at most %d", got, n, deliveryLogSize, limit)
	}
	if removed {
		t.Errorf("revision of the removed subscriber %s still remembered", sub.ID)
	}
}
