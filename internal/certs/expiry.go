package certs

import (
	"context"
	"slices"
	"sync"
	"time"
)

// Expiry horizons counted by ExpiryCounts.
var (
	Within7Days  = 7 * 24 * time.Hour
	Within30Days = 30 * 24 * time.Hour
)

// ExpiryCounts is how many installed bundles have expired or expire soon.
type ExpiryCounts struct {
	Expired      int64 `json:"expired"`
	Within7Days  int64 `json:"within_7d"`  // not expired, expiring within 7 days
	Within30Days int64 `json:"within_30d"` // not expired, expiring within 30 days (includes the 7-day ones)
	Total        int64 `json:"total"`
}

// expiryCache keeps the last ExpiryCounts for a short while: counting walks
// the whole index, which at a million names takes tens of milliseconds.
type expiryCache struct {
	mu     sync.Mutex
	at     time.Time
	counts ExpiryCounts
}

// expiryCacheTTL bounds how stale ExpiryCounts may be.
const expiryCacheTTL = 30 * time.Second

// expiries walks the index once and calls fn for each bundle (by id) with
// its expiry. Each shard is read under its own read lock.
func (m *Manager) expiries(fn func(id string, notAfter time.Time)) {
	seen := make(map[string]struct{}, m.idx.bundles.Load())
	for i := range m.idx.shards {
		sh := &m.idx.shards[i]
		sh.mu.RLock()
		for _, es := range sh.m {
			for _, e := range es {
				if _, ok := seen[e.id]; ok {
					continue
				}
				seen[e.id] = struct{}{}
				fn(e.id, e.notAfter)
			}
		}
		sh.mu.RUnlock()
	}
}

// ExpiryCounts returns how many bundles have expired or expire within 7
// and 30 days, from the in-memory index (cached for up to 30 s).
func (m *Manager) ExpiryCounts() ExpiryCounts {
	c := &m.expiry
	c.mu.Lock()
	defer c.mu.Unlock()
	now := m.now()
	if !c.at.IsZero() && now.Sub(c.at) < expiryCacheTTL && now.After(c.at) {
		return c.counts
	}
	var counts ExpiryCounts
	m.expiries(func(_ string, na time.Time) {
		counts.Total++
		switch left := na.Sub(now); {
		case left <= 0:
			counts.Expired++
		case left <= Within7Days:
			counts.Within7Days++
			counts.Within30Days++
		case left <= Within30Days:
			counts.Within30Days++
		}
	})
	c.at, c.counts = now, counts
	return counts
}

// Expiring returns up to limit bundles (0: 1000) that have expired or
// expire within the given duration, soonest first.
func (m *Manager) Expiring(ctx context.Context, within time.Duration, limit int) ([]Info, error) {
	if limit <= 0 {
		limit = 1000
	}
	type cand struct {
		id string
		na time.Time
	}
	deadline := m.now().Add(within)
	var cands []cand
	m.expiries(func(id string, na time.Time) {
		if !na.After(deadline) {
			cands = append(cands, cand{id, na})
		}
	})
	slices.SortFunc(cands, func(a, b cand) int {
		if c := a.na.Compare(b.na); c != 0 {
			return c
		}
		return compareStrings(a.id, b.id)
	})
	if len(cands) > limit {
		cands = cands[:limit]
	}
	out := make([]Info, 0, len(cands))
	for _, c := range cands {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		info, err := m.Get(ctx, c.id)
		if err != nil {
			// Removed since the walk: skip it.
			continue
		}
		out = append(out, info)
	}
	return out, nil
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
