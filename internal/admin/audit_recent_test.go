package admin

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestAuditRecent keeps the latest records newest first, widening past the
// last hour and the last day when fewer were found there.
func TestAuditRecent(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	a := NewAudit(boltStore(t), AuditOptions{Now: func() time.Time { return now }})
	ctx := context.Background()
	// 25 records a day ago and more, then 3 within the last hour.
	for i := range 25 {
		at := now.Add(-48*time.Hour + time.Duration(i)*time.Minute)
		if err := a.Record(ctx, AuditRecord{Time: at, Action: "route.add", Object: fmt.Sprintf("routes/old-%02d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		if err := a.Record(ctx, AuditRecord{Time: now.Add(-time.Duration(30-i) * time.Minute), Action: "route.add", Object: fmt.Sprintf("routes/new-%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := a.Recent(ctx, 20)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 20 {
		t.Fatalf("got %d records, want 20", len(got))
	}
	if got[0].Object != "routes/new-2" || got[2].Object != "routes/new-0" || got[3].Object != "routes/old-24" || got[19].Object != "routes/old-08" {
		t.Fatalf("order: first %s, third %s, fourth %s, last %s", got[0].Object, got[2].Object, got[3].Object, got[19].Object)
	}
	got, err = a.Recent(ctx, 2)
	if err != nil || len(got) != 2 || got[0].Object != "routes/new-2" || got[1].Object != "routes/new-1" {
		t.Fatalf("two latest: %v %+v", err, got)
	}
}
