package hostnames

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"gatehouse/internal/loop"
	"gatehouse/internal/store"
)

// followFuncs receive a prefix's keys: reset with a full listing (at start
// and after the watch history was compacted), then each watched event.
type followFuncs struct {
	reset func(kvs []store.KV)
	event func(ev store.Event)
	// synced is called after each listing or watch response with the
	// revision the receiver now reflects.
	synced func(rev int64)
}

// follow watches prefix from rev (that of a relist the caller made) until
// ctx is done, relisting when the store no longer has the history to resume
// from and retrying with backoff when the watch fails. It is the one place
// this package watches the store, so that a shared follower can replace it
// in a few lines.
func follow(ctx context.Context, st store.Store, prefix string, rev int64, f followFuncs, log *slog.Logger) {
	const minBackoff, maxBackoff = 100 * time.Millisecond, 30 * time.Second
	backoff := minBackoff
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(ctx)
		err := func() error {
			for resp := range st.Watch(wctx, prefix, rev) {
				if resp.Err != nil {
					return resp.Err
				}
				for _, ev := range resp.Events {
					f.event(ev)
				}
				rev = resp.Rev
				backoff = minBackoff
				f.synced(rev)
			}
			return nil
		}()
		cancel()
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, store.ErrCompacted) {
			r, lerr := relist(ctx, st, prefix, f)
			if lerr == nil {
				rev = r
				continue
			}
			err = lerr
		}
		if err == nil || errors.Is(err, store.ErrClosed) {
			if err == nil {
				err = store.ErrClosed
			}
		}
		log.Warn("hostname watch failed; retrying", "err", err, "retry_in", backoff)
		if !loop.Sleep(ctx, backoff) {
			return
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// relist reads every key under prefix, hands them to f.reset and returns
// the revision to watch from (that of the first page: a listing over pages
// may mix revisions, and the watch replays what changed meanwhile).
func relist(ctx context.Context, st store.Store, prefix string, f followFuncs) (int64, error) {
	const page = 10000
	var all []store.KV
	var first int64
	after := ""
	for {
		kvs, rev, err := st.List(ctx, prefix, after, page)
		if err != nil {
			return 0, err
		}
		if first == 0 {
			first = rev
		}
		all = append(all, kvs...)
		if len(kvs) < page {
			break
		}
		after = kvs[len(kvs)-1].Key
	}
	f.reset(all)
	f.synced(first)
	return first, nil
}
