package status

import (
	"context"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"gatehouse/internal/config"
	"gatehouse/internal/store"
	"gatehouse/internal/store/bolt"
)

// TestRenderOutsideLock checks that a write's rendering runs after the
// portal's lock is released and is swapped in before the write returns,
// and that a snapshot rendered late never replaces a later one.
func TestRenderOutsideLock(t *testing.T) {
	clk := &clock{t: t0}
	p := New(config.Status{Title: "Render", Components: []config.Component{{Name: "Web", Pools: []string{"web"}}}}, nil, nil, Options{Now: clk.Now})
	rev := p.Revision()

	p.mu.Lock()
	p.renderLocked()
	free := false
	p.pendingSite.do(func(*siteBuilder) {
		if p.mu.TryLock() {
			free = true
			p.mu.Unlock()
		}
	})
	if p.Revision() != rev {
		t.Fatalf("revision %d after a snapshot under the lock, want %d until unlock", p.Revision(), rev)
	}
	p.unlock()
	if !free {
		t.Error("the portal's lock was held while the site rendered")
	}
	if p.Revision() != rev+1 {
		t.Fatalf("revision %d after unlock, want %d", p.Revision(), rev+1)
	}

	if _, err := p.OpenIncident(context.Background(), IncidentRequest{Name: "Slow pages", Body: "Investigating.", Components: []string{"Web"}}); err != nil {
		t.Fatal(err)
	}
	if got := string(p.Files()["index.html"]); !strings.Contains(got, "Slow pages") {
		t.Fatal("the incident is not on the page when OpenIncident returns")
	}

	// Two snapshots rendered out of order: the later one stays.
	p.mu.Lock()
	p.renderLocked()
	older := p.pendingSite
	p.pendingSite = nil
	p.comps[0].status = Major
	p.renderLocked()
	newer := p.pendingSite
	p.pendingSite = nil
	p.mu.Unlock()
	p.renderSite(newer)
	rev = p.Revision()
	p.renderSite(older)
	if p.Revision() != rev {
		t.Fatalf("an older snapshot replaced a newer rendering (revision %d → %d)", rev, p.Revision())
	}
	if got := string(p.Files()["api/v2/components.json"]); !strings.Contains(got, `"status":"`+Major+`"`) {
		t.Fatalf("components.json after out-of-order renderings: %s", got)
	}
}

// heldStore holds every transaction on status/state until release is
// closed, once hold is set.
type heldStore struct {
	store.Store
	hold    atomic.Bool
	entered chan struct{}
	release chan struct{}
}

func (s *heldStore) Txn(ctx context.Context, conds []store.Cond, ops []store.Op) (int64, error) {
	for _, op := range ops {
		if op.Key == keyState && s.hold.Load() {
			s.entered <- struct{}{}
			<-s.release
			break
		}
	}
	return s.Store.Txn(ctx, conds, ops)
}

// TestFlushOutsideLock holds the leader's write of its decisions after an
// override and checks that the portal answers meanwhile, and that the
// write lands before the override call returns.
func TestFlushOutsideLock(t *testing.T) {
	st, err := bolt.Open(filepath.Join(t.TempDir(), "status.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	hs := &heldStore{Store: st, entered: make(chan struct{}, 1), release: make(chan struct{})}
	clk := &clock{t: t0}
	h := &health{pools: map[string][]bool{"web": {true, true}, "mobile": {true}, "web-us": {true}}}
	p := New(testStatus, nil, h.source, Options{Now: clk.Now, Store: hs, IDs: seqIDs(), Interval: time.Hour})
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	stop := lead(t, p)
	t.Cleanup(func() {
		stop()
		p.Close()
		st.Close()
	})

	hs.hold.Store(true)
	done := make(chan error, 1)
	go func() {
		_, err := p.SetOverride(context.Background(), "EU01/Web app", OverrideRequest{Status: Major})
		done <- err
	}()
	select {
	case <-hs.entered:
	case <-time.After(20 * time.Second):
		t.Fatal("the override wrote no decisions")
	}
	answered := make(chan []ComponentState, 1)
	go func() { answered <- p.Components() }()
	select {
	case cs := <-answered:
		for _, c := range cs {
			if c.Region+"/"+c.Name == "EU01/Web app" && c.Status != Major {
				t.Errorf("during the write the portal shows %s for EU01/Web app", c.Status)
			}
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the portal's lock was held during the store write")
	}
	select {
	case err := <-done:
		t.Fatalf("SetOverride returned (%v) before its decisions were written", err)
	default:
	}
	hs.hold.Store(false)
	close(hs.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	kv, err := st.Get(context.Background(), keyState)
	if err != nil || !strings.Contains(string(kv.Value), Major) {
		t.Fatalf("status/state after the override: %v, %v", kv, err)
	}
}
