package hostnames

import (
	"context"

	"gatehouse/internal/store"
)

// follower keeps a Manager in step with hostnames/ through store.Follow.
type follower struct{ m *Manager }

// Reset replaces the in-memory index with a full listing.
func (f follower) Reset(ctx context.Context, l *store.Listing) error {
	var kvs []store.KV
	for kv, err := range l.All() {
		if err != nil {
			return err
		}
		kvs = append(kvs, kv)
	}
	f.m.reset(kvs)
	f.m.synced(l.Rev())
	return nil
}

// Apply applies watched changes.
func (f follower) Apply(resps []store.WatchResponse) {
	for _, resp := range resps {
		for _, ev := range resp.Events {
			f.m.event(ev)
		}
		f.m.synced(resp.Rev)
	}
}
