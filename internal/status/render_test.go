package status

import (
	"context"
	"strings"
	"testing"

	"gatehouse/internal/config"
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
