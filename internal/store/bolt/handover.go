package bolt

import (
	"context"
	"time"
)

// WaitWritable reopens a read-only store read-write as soon as the process
// that still holds the file (the one a binary upgrade replaces) releases
// it: it retries ReopenWritable with a backoff from 50ms to 1s until it
// succeeds or ctx ends, logging every tenth failure. It returns nil once the
// store is writable (at once if it already is) and ctx's error otherwise.
func (s *Store) WaitWritable(ctx context.Context) error {
	if !s.ReadOnly() {
		return nil
	}
	start := time.Now()
	wait := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := s.ReopenWritable()
		if err == nil {
			s.log.Info("store writable again: the binary upgrade is complete", "waited", time.Since(start).Round(time.Millisecond), "attempts", attempt)
			return nil
		}
		if attempt%10 == 1 {
			s.log.Warn("store stays read-only: its file is still held", "err", err, "retry_in", wait)
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
		wait = min(2*wait, time.Second)
	}
}
