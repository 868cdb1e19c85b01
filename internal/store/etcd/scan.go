package etcd

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// scanPageSize is the page of a Scan on a cluster without range streams.
var scanPageSize int64 = 10000

// Scan calls fn for every key under prefix, in key order, at one revision
// of the store, and returns that revision. Key and value are valid only
// during the call and must not be modified; key is relative to the store's
// prefix, as everywhere in store.Store. Nothing is accumulated: the keys
// arrive in chunks of one range stream (etcd 3.7 and later), or, on older
// clusters, in pages all read at the revision of the first. An error from
// fn stops the scan and is returned; fn may have seen part of the prefix
// when Scan fails. Each chunk must arrive within Options.RequestTimeout,
// the whole scan may take longer.
func (s *Store) Scan(ctx context.Context, prefix string, fn func(key, value []byte) error) (int64, error) {
	if err := s.enter(); err != nil {
		return 0, err
	}
	defer s.calls.Done()
	if !s.noStream.Load() {
		rev, err := s.scanStream(ctx, prefix, fn)
		if status.Code(err) != codes.Unimplemented {
			return rev, err
		}
		s.noStream.Store(true)
	}
	return s.scanPages(ctx, prefix, fn)
}

func (s *Store) scanStream(ctx context.Context, prefix string, fn func(key, value []byte) error) (int64, error) {
	// The stream may take longer than one request: bound the wait for each
	// chunk instead of the whole.
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(s.ctx, cancel)
	defer stop()
	var stalled atomic.Bool
	idle := time.AfterFunc(s.opts.RequestTimeout, func() { stalled.Store(true); cancel() })
	defer idle.Stop()

	full := s.full(prefix)
	ch, err := s.cli.GetStream(cctx, full, clientv3.WithRange(rangeEnd(full)))
	if err != nil {
		return 0, s.scanErr(ctx, prefix, err, stalled.Load())
	}
	var rev int64
	for r := range ch {
		if err := r.Err(); err != nil {
			return 0, s.scanErr(ctx, prefix, err, stalled.Load())
		}
		idle.Reset(s.opts.RequestTimeout)
		for _, kv := range r.Kvs {
			if err := fn(kv.Key[len(s.prefix):], kv.Value); err != nil {
				cancel()
				for range ch { // let the client's reader end
				}
				return 0, err
			}
		}
		if r.Header != nil {
			rev = r.Header.Revision
			s.noteCluster(r.Header.ClusterId)
		}
	}
	if rev == 0 {
		if err := cctx.Err(); err != nil {
			return 0, s.scanErr(ctx, prefix, err, stalled.Load())
		}
		return 0, fmt.Errorf("scanning %q: range stream ended without a header", prefix)
	}
	s.markUp()
	return rev, nil
}

func (s *Store) scanErr(ctx context.Context, prefix string, err error, stalled bool) error {
	if stalled && ctx.Err() == nil {
		err = fmt.Errorf("no data for %v: %w", s.opts.RequestTimeout, context.DeadlineExceeded)
	}
	if status.Code(err) == codes.Unimplemented {
		return err
	}
	return s.mapErr(ctx, fmt.Sprintf("scanning %q", prefix), err)
}

// scanPages reads prefix in pages, each at the revision of the first, so
// that the scan is one consistent snapshot like a stream.
func (s *Store) scanPages(ctx context.Context, prefix string, fn func(key, value []byte) error) (int64, error) {
	full := s.full(prefix)
	end := rangeEnd(full)
	start := full
	var rev int64
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(scanPageSize)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		cctx, cancel := s.callCtx(ctx)
		resp, err := s.cli.Get(cctx, start, opts...)
		cancel()
		if err != nil {
			return 0, s.mapErr(ctx, fmt.Sprintf("scanning %q at revision %d", prefix, rev), err)
		}
		if rev == 0 {
			rev = resp.Header.Revision
			s.noteCluster(resp.Header.ClusterId)
		}
		for _, kv := range resp.Kvs {
			if err := fn(kv.Key[len(s.prefix):], kv.Value); err != nil {
				return 0, err
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		start = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	s.markUp()
	return rev, nil
}

// noteCluster remembers the id of the cluster that answered.
func (s *Store) noteCluster(id uint64) {
	if id != 0 {
		s.clusterID.Store(id)
	}
}

// Identity names the data this store reads: the etcd cluster's id and the
// key prefix, e.g. "etcd cluster 8e9e05c52164694d prefix /gatehouse/". A
// copy of the data kept elsewhere (a node's local index snapshot) is of
// this store only if the identities match. The cluster id is asked of the
// cluster once; while no member has answered yet the error wraps
// store.ErrUnavailable.
func (s *Store) Identity(ctx context.Context) (string, error) {
	if id := s.clusterID.Load(); id != 0 {
		return s.identity(id), nil
	}
	if _, err := s.Rev(ctx); err != nil {
		return "", fmt.Errorf("etcd cluster identity: %w", err)
	}
	return s.identity(s.clusterID.Load()), nil
}

func (s *Store) identity(id uint64) string {
	return fmt.Sprintf("etcd cluster %016x prefix %s", id, s.prefix)
}

// Reachable reports whether the cluster answered the last call or probe
// (see Health), without calling it.
func (s *Store) Reachable() bool { return s.Health().Reachable }
