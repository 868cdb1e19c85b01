// Package retry holds the cancellable sleep
// that Gatehouse's long-running loops share between retries: store watches
// and relists, elections, ticket-key and route followers.
package retry

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
