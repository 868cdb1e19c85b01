package bolt

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"

	bbolt "go.etcd.io/bbolt"

	"gatehouse/internal/store"
)

// replayChunk is how many revisions a replaying watch reads per bbolt read
// transaction, so that a slow consumer never holds one open for long.
const replayChunk = 256

// hub fans committed transactions out to watchers in revision order.
type hub struct {
	mu sync.Mutex
	// mu guards the fields below.
	rev      int64 // last revision published
	watchers map[*watcher]struct{}
}

// watcher is one Watch call.
type watcher struct {
	prefix string
	out    chan store.WatchResponse
	notify chan struct{} // capacity 1: the queue has something

	mu sync.Mutex
	// mu guards the fields below.
	queue    []store.WatchResponse // live responses, shared: clone before delivery
	overflow bool
}

// publish delivers the events of rev to every interested watcher without
// blocking. Called by the committer, in revision order.
func (h *hub) publish(rev int64, evs []store.Event, s *Store) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.rev = rev
	for w := range h.watchers {
		var mine []store.Event
		for _, e := range evs {
			if strings.HasPrefix(e.KV.Key, w.prefix) {
				mine = append(mine, e)
			}
		}
		if len(mine) == 0 {
			continue
		}
		w.push(store.WatchResponse{Events: mine, Rev: rev}, s)
	}
}

func (w *watcher) push(r store.WatchResponse, s *Store) {
	w.mu.Lock()
	switch {
	case w.overflow:
	case len(w.queue) >= s.opts.WatchQueue:
		w.overflow = true
		w.queue = nil
		s.log.Warn("watch consumer too slow, ending its watch with ErrCompacted",
			"prefix", w.prefix, "queued_responses", s.opts.WatchQueue, "rev", r.Rev)
	default:
		w.queue = append(w.queue, r)
	}
	w.mu.Unlock()
	select {
	case w.notify <- struct{}{}:
	default:
	}
}

// Watch implements store.Store.
func (s *Store) Watch(ctx context.Context, prefix string, fromRev int64) <-chan store.WatchResponse {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ch := make(chan store.WatchResponse, 1)
		ch <- store.WatchResponse{Err: fmt.Errorf("watching %q: %w", prefix, store.ErrClosed)}
		close(ch)
		return ch
	}
	s.watchWG.Add(1)
	s.mu.Unlock()

	w := &watcher{
		prefix: prefix,
		out:    make(chan store.WatchResponse),
		notify: make(chan struct{}, 1),
	}
	s.hub.mu.Lock()
	now := s.hub.rev
	s.hub.watchers[w] = struct{}{}
	s.hub.mu.Unlock()
	if fromRev <= 0 {
		fromRev = now
	}
	go s.runWatch(ctx, w, fromRev, now)
	return w.out
}

// runWatch replays (fromRev, now] from the events bucket, then delivers live
// responses (already queued from now+1 on), skipping any at or before the
// last revision delivered.
func (s *Store) runWatch(ctx context.Context, w *watcher, fromRev, now int64) {
	defer s.watchWG.Done()
	defer close(w.out)
	defer func() {
		s.hub.mu.Lock()
		delete(s.hub.watchers, w)
		s.hub.mu.Unlock()
	}()

	send := func(r store.WatchResponse) bool {
		select {
		case w.out <- r:
			return true
		case <-ctx.Done():
		case <-s.done:
		}
		return false
	}

	last := fromRev
	for last < now {
		resps, next, err := s.replay(w.prefix, last, now)
		if err != nil {
			send(store.WatchResponse{Rev: last, Err: err})
			return
		}
		for _, r := range resps {
			if !send(r) {
				return
			}
		}
		last = next
	}

	for {
		select {
		case <-w.notify:
		case <-ctx.Done():
			return
		case <-s.done:
			return
		}
		w.mu.Lock()
		q, overflow := w.queue, w.overflow
		w.queue = nil
		w.mu.Unlock()
		if overflow {
			send(store.WatchResponse{Rev: last, Err: fmt.Errorf("watching %q: consumer fell more than %d responses behind at revision %d: %w", w.prefix, s.opts.WatchQueue, last, store.ErrCompacted)})
			return
		}
		for _, r := range q {
			if r.Rev <= last {
				continue
			}
			if !send(cloneResponse(r)) {
				return
			}
			last = r.Rev
		}
	}
}

// replay reads up to replayChunk revisions after `after` and up to `upTo`,
// returning the responses matching prefix and the last revision covered.
func (s *Store) replay(prefix string, after, upTo int64) ([]store.WatchResponse, int64, error) {
	var (
		out  []store.WatchResponse
		next int64
	)
	err := s.view(func(tx *bbolt.Tx) error {
		var err error
		out, next, err = replayTx(tx, prefix, after, upTo)
		return err
	})
	return out, next, err
}

// replayTx is replay inside the read transaction tx.
func replayTx(tx *bbolt.Tx, prefix string, after, upTo int64) ([]store.WatchResponse, int64, error) {
	var out []store.WatchResponse
	next := after
	err := func() error {
		compacted, err := readU64(tx.Bucket(bucketMeta).Get(metaCompacted))
		if err != nil {
			return err
		}
		if after < int64(compacted) {
			return fmt.Errorf("watching %q from revision %d: events up to revision %d are compacted: %w", prefix, after, compacted, store.ErrCompacted)
		}
		c := tx.Bucket(bucketEvents).Cursor()
		n := 0
		for k, v := c.Seek(revKey(after + 1)); k != nil && n < replayChunk; k, v = c.Next() {
			rev := int64(modRevOf(k))
			if rev > upTo {
				break
			}
			n++
			next = rev
			evs, err := decodeEvents(rev, v)
			if err != nil {
				return err
			}
			var mine []store.Event
			for _, e := range evs {
				if strings.HasPrefix(e.KV.Key, prefix) {
					mine = append(mine, e)
				}
			}
			if len(mine) > 0 {
				out = append(out, store.WatchResponse{Events: mine, Rev: rev})
			}
		}
		if n < replayChunk {
			// Every revision up to upTo has been read (a revision always has
			// events): the replay is complete.
			next = upTo
		}
		return nil
	}()
	return out, next, err
}

func cloneResponse(r store.WatchResponse) store.WatchResponse {
	evs := make([]store.Event, len(r.Events))
	for i, e := range r.Events {
		evs[i] = e
		evs[i].KV.Value = bytes.Clone(e.KV.Value)
	}
	r.Events = evs
	return r
}
