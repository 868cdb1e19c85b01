package etcd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"gatehouse/internal/store"
)

// Watch implements store.Store. The watch requires a leader, so a member cut
// off from its quorum does not keep it waiting silently; whenever etcd ends
// it for any reason but compaction, it is started again from the revision
// after the last one delivered, after a short backoff. Progress
// notifications advance that revision without delivering anything.
func (s *Store) Watch(ctx context.Context, prefix string, fromRev int64) <-chan store.WatchResponse {
	return s.startWatch(ctx, prefix, fromRev, false)
}

// WatchProgress is Watch that also delivers the progress notifications the
// cluster sends: a response with no events and Rev r means that every
// change under prefix up to revision r has been delivered. The cluster
// sends one when asked by RequestProgress, once the watch has caught up.
func (s *Store) WatchProgress(ctx context.Context, prefix string, fromRev int64) <-chan store.WatchResponse {
	return s.startWatch(ctx, prefix, fromRev, true)
}

// RequestProgress asks the cluster for a progress notification on every
// watch of this store that has caught up with the current revision (see
// WatchProgress). Watches still replaying history get none.
func (s *Store) RequestProgress(ctx context.Context) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.calls.Done()
	cctx, cancel := s.callCtx(ctx)
	defer cancel()
	// The watches run on the stream of leader-requiring contexts.
	if err := s.cli.RequestProgress(clientv3.WithRequireLeader(cctx)); err != nil {
		return s.mapErr(ctx, "requesting watch progress", err)
	}
	return nil
}

func (s *Store) startWatch(ctx context.Context, prefix string, fromRev int64, progress bool) <-chan store.WatchResponse {
	out := make(chan store.WatchResponse, 1)
	if err := s.enter(); err != nil {
		out <- store.WatchResponse{Err: err}
		close(out)
		return out
	}
	defer s.calls.Done()
	if fromRev <= 0 {
		// "From now on" must include a write made right after Watch
		// returns, so pin now to a revision before returning.
		rev, err := s.rev(ctx)
		if err != nil {
			out <- store.WatchResponse{Err: err}
			close(out)
			return out
		}
		fromRev = rev
	}
	s.bg.Go(func() {
		defer close(out)
		s.watch(ctx, prefix, fromRev, out, progress)
	})
	return out
}

func (s *Store) watch(ctx context.Context, prefix string, last int64, out chan<- store.WatchResponse, progress bool) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(s.ctx, cancel)()
	full := s.full(prefix)
	backoff := 50 * time.Millisecond
	send := func(r store.WatchResponse) bool {
		select {
		case out <- r:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for {
		wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := s.cli.Watch(wctx, full, clientv3.WithRange(rangeEnd(full)), clientv3.WithRev(last+1), clientv3.WithProgressNotify())
		var werr error
		for resp := range wch {
			if resp.CompactRevision != 0 || errors.Is(resp.Err(), rpctypes.ErrCompacted) {
				wcancel()
				send(store.WatchResponse{Err: fmt.Errorf("watching %q from revision %d: etcd compacted up to %d: %w", prefix, last, resp.CompactRevision, store.ErrCompacted)})
				return
			}
			if err := resp.Err(); err != nil {
				werr = err
				break
			}
			if resp.IsProgressNotify() {
				last = max(last, resp.Header.Revision)
				if progress && !send(store.WatchResponse{Rev: last}) {
					wcancel()
					return
				}
				continue
			}
			for _, r := range s.split(resp.Events) {
				if r.Rev <= last {
					continue // already delivered before a restart
				}
				if !send(r) {
					wcancel()
					return
				}
				last = r.Rev
			}
			backoff = 50 * time.Millisecond
		}
		wcancel()
		if ctx.Err() != nil {
			if s.ctx.Err() != nil {
				send(store.WatchResponse{Err: store.ErrClosed})
			}
			return
		}
		if werr == nil {
			werr = errors.New("watch channel closed")
		}
		s.log.Debug("etcd watch interrupted; resuming", "prefix", prefix, "from", last+1, "err", werr, "retry_in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			if s.ctx.Err() != nil {
				send(store.WatchResponse{Err: store.ErrClosed})
			}
			return
		case <-t.C:
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// split groups etcd events into one response per revision.
func (s *Store) split(evs []*clientv3.Event) []store.WatchResponse {
	var out []store.WatchResponse
	for _, ev := range evs {
		rev := ev.Kv.ModRevision
		if len(out) == 0 || out[len(out)-1].Rev != rev {
			out = append(out, store.WatchResponse{Rev: rev})
		}
		e := store.Event{KV: store.KV{Key: string(ev.Kv.Key[len(s.prefix):]), ModRev: rev}}
		if ev.Type == clientv3.EventTypeDelete {
			e.Type = store.EventDelete
		} else {
			e.Type = store.EventPut
			e.KV.Value = bytes.Clone(ev.Kv.Value)
			if e.KV.Value == nil {
				e.KV.Value = []byte{}
			}
		}
		out[len(out)-1].Events = append(out[len(out)-1].Events, e)
	}
	return out
}
