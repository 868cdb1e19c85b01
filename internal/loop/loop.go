// Package loop holds the cancellable sleep and the periodic loop that
// Gatehouse's long-running goroutines share: retries of store watches,
// relists and elections, and work done every interval (sweeps, probes,
// compaction, status ticks).
package loop

import (
	"context"
	"time"
)

// Sleep waits for d or until ctx is done, and reports whether the whole of
// d passed (false: ctx ended first).
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Every calls fn each time d passes (not at once) until ctx is done. A
// call that takes longer than d delays the next rather than piling up.
func Every(ctx context.Context, d time.Duration, fn func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn()
		}
	}
}
