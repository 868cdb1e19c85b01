// Package etcd is Gatehouse's fleet store: store.Store over an etcd v3
// cluster shared by every node.
//
// Keys live under a prefix (default "/gatehouse/"); revisions are etcd's
// own. A transaction is one etcd transaction, with each condition compared
// on the key's modification revision (or, for "absent", its creation
// revision being 0). Watches resume by themselves from their last revision
// when the connection to a member breaks; only a compacted revision ends
// them. Calls that cannot reach a quorum within Options.RequestTimeout fail
// with an error wrapping store.ErrUnavailable, and Health reports whether
// the cluster answered the last probe, so a node can keep serving what it
// has and say so.
package etcd

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"gatehouse/internal/store"
)

var (
	_ store.Store = (*Store)(nil)
	_ store.Sizer = (*Store)(nil)
)

// Limits and defaults.
const (
	// MaxTxnOps is etcd's default limit on the operations (and, separately,
	// the conditions) of one transaction. A larger transaction is refused
	// with an error wrapping store.ErrTooLarge rather than split, since a
	// transaction must be atomic.
	MaxTxnOps = 128
	// MaxRequestBytes is etcd's default limit on the size of one request.
	MaxRequestBytes = 1536 * 1024
	// DefaultPrefix namespaces every key.
	DefaultPrefix = "/gatehouse/"

	defaultDialTimeout    = 5 * time.Second
	defaultRequestTimeout = 5 * time.Second
	defaultHealthInterval = 2 * time.Second
)

// Options configure Open.
type Options struct {
	// Endpoints are the client URLs of the etcd members (at least one).
	Endpoints []string
	// Prefix namespaces every key; "/" is appended when missing. Empty
	// means DefaultPrefix.
	Prefix string
	// DialTimeout bounds the first connection (0: 5s). Open does not fail
	// when no member answers in time: the store starts unavailable and
	// connects when a member comes up.
	DialTimeout time.Duration
	// RequestTimeout bounds each call that the caller's context does not
	// bound more tightly (0: 5s). A call that times out fails with an error
	// wrapping store.ErrUnavailable.
	RequestTimeout time.Duration
	// HealthInterval is how often the cluster is probed for Health and
	// Usage (0: 2s).
	HealthInterval time.Duration
	// Username and Password authenticate to etcd when Username is set.
	Username, Password string
	// TLS configures TLS to the members; nil means plain connections.
	TLS *tls.Config
	// Logger receives operational messages; nil discards them.
	Logger *slog.Logger
}

// Store is a store.Store over etcd. It is safe for concurrent use.
type Store struct {
	cli    *clientv3.Client
	prefix string
	opts   Options
	log    *slog.Logger

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	bg     sync.WaitGroup // health loop and watches

	mu sync.Mutex
	// mu guards closed; calls hold a count in calls while they use cli.
	closed bool
	calls  sync.WaitGroup

	health   atomic.Pointer[Health]
	usage    atomic.Pointer[usageAt]
	noStream atomic.Bool // the cluster does not implement RangeStream
	// clusterID is the id of the cluster that answered (0: none yet).
	clusterID atomic.Uint64
}

type usageAt struct {
	u  store.Usage
	at time.Time
}

// Open connects to the cluster described by opts. It returns once a member
// has answered or DialTimeout has passed; in the latter case the store
// starts unavailable (see Health) and keeps trying.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if len(opts.Endpoints) == 0 {
		return nil, errors.New("etcd store: no endpoints")
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if !strings.HasSuffix(opts.Prefix, "/") {
		opts.Prefix += "/"
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = defaultDialTimeout
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = defaultRequestTimeout
	}
	if opts.HealthInterval <= 0 {
		opts.HealthInterval = defaultHealthInterval
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	log = log.With("component", "store", "backend", "etcd", "prefix", opts.Prefix)
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            opts.Endpoints,
		DialTimeout:          opts.DialTimeout,
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 3 * time.Second,
		Username:             opts.Username,
		Password:             opts.Password,
		TLS:                  opts.TLS,
		Logger:               zap.NewNop(),
		Context:              context.WithoutCancel(ctx),
		// Reconnect within a second of a member coming back, rather than
		// after gRPC's default backoff of up to two minutes.
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: time.Second,
		})},
	})
	if err != nil {
		return nil, fmt.Errorf("etcd store %v: %w", opts.Endpoints, err)
	}
	sctx, cancel := context.WithCancel(context.Background())
	s := &Store{cli: cli, prefix: opts.Prefix, opts: opts, log: log, ctx: sctx, cancel: cancel}
	s.health.Store(&Health{Since: time.Now(), Err: "not probed yet"})
	pctx, pcancel := context.WithTimeout(ctx, opts.DialTimeout)
	s.probe(pctx)
	pcancel()
	if h := s.Health(); !h.Reachable {
		log.Warn("etcd unreachable at start; serving from what this node has until it answers", "endpoints", opts.Endpoints, "err", h.Err)
	} else {
		log.Info("store opened", "endpoints", opts.Endpoints)
	}
	s.bg.Go(s.healthLoop)
	return s, nil
}

// Client returns the underlying etcd client, for features built on etcd
// itself (leases, elections). It is closed by Close.
func (s *Store) Client() *clientv3.Client { return s.cli }

// Prefix returns the key prefix of the store, ending in "/".
func (s *Store) Prefix() string { return s.prefix }

// enter registers a call; it fails once the store is closed.
func (s *Store) enter() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.ErrClosed
	}
	s.calls.Add(1)
	return nil
}

// Close ends every watch, waits for calls in progress and closes the
// client. Calling it again does nothing.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.calls.Wait()
	s.bg.Wait()
	if err := s.cli.Close(); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("closing etcd client: %w", err)
	}
	return nil
}

// callCtx bounds a call by the request timeout and by Close.
func (s *Store) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	cctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
	stop := context.AfterFunc(s.ctx, cancel)
	return cctx, func() { stop(); cancel() }
}

// full returns the etcd key of key.
func (s *Store) full(key string) string { return s.prefix + key }

// rangeEnd is the end of the etcd range of keys starting with full.
func rangeEnd(full string) string {
	if full == "" {
		return "\x00"
	}
	return clientv3.GetPrefixRangeEnd(full)
}

// Get implements store.Store. The read is linearizable: it reflects every
// write that completed before it started.
func (s *Store) Get(ctx context.Context, key string) (store.KV, error) {
	return s.get(ctx, key, false)
}

// GetSerializable is Get answered by the member the client is connected to
// from its own copy, without a round trip to the leader (about a third of
// the cost). The value may lag the latest writes by the member's
// replication delay: a caller that needs the latest falls back to Get on
// store.ErrNotFound. Content-addressed keys, whose value never changes
// once written, are safe to read this way.
func (s *Store) GetSerializable(ctx context.Context, key string) (store.KV, error) {
	return s.get(ctx, key, true)
}

func (s *Store) get(ctx context.Context, key string, serializable bool) (store.KV, error) {
	if err := s.enter(); err != nil {
		return store.KV{}, err
	}
	defer s.calls.Done()
	cctx, cancel := s.callCtx(ctx)
	defer cancel()
	var opts []clientv3.OpOption
	if serializable {
		opts = append(opts, clientv3.WithSerializable())
	}
	resp, err := s.cli.Get(cctx, s.full(key), opts...)
	if err != nil {
		return store.KV{}, s.mapErr(ctx, fmt.Sprintf("getting %q", key), err)
	}
	if !serializable {
		// A member cut off from its quorum still answers serializable
		// reads: only a linearizable one proves the cluster reachable.
		s.markUp()
	}
	if len(resp.Kvs) == 0 {
		return store.KV{}, fmt.Errorf("getting %q: %w", key, store.ErrNotFound)
	}
	kv := resp.Kvs[0]
	return store.KV{Key: key, Value: bytes.Clone(kv.Value), ModRev: kv.ModRevision}, nil
}

// List implements store.Store. It streams the range from the cluster when
// it supports that (etcd 3.7 and later), so that a long listing costs one
// request and no recount per page.
func (s *Store) List(ctx context.Context, prefix, startAfter string, limit int) ([]store.KV, int64, error) {
	if err := s.enter(); err != nil {
		return nil, 0, err
	}
	defer s.calls.Done()
	start, end := s.full(prefix), rangeEnd(s.full(prefix))
	if startAfter >= prefix {
		start = s.full(startAfter) + "\x00"
	}
	if end != "\x00" && start >= end {
		rev, err := s.rev(ctx)
		return nil, rev, err
	}
	opts := []clientv3.OpOption{clientv3.WithRange(end)}
	if limit > 0 {
		opts = append(opts, clientv3.WithLimit(int64(limit)))
	}
	cctx, cancel := s.callCtx(ctx)
	defer cancel()
	var (
		kvs []store.KV
		rev int64
		err error
	)
	if !s.noStream.Load() {
		kvs, rev, err = s.listStream(cctx, start, opts)
		if status.Code(err) == codes.Unimplemented {
			s.noStream.Store(true)
		}
	}
	if s.noStream.Load() {
		kvs, rev, err = s.listGet(cctx, start, opts)
	}
	if err != nil {
		return nil, 0, s.mapErr(ctx, fmt.Sprintf("listing %q", prefix), err)
	}
	s.markUp()
	return kvs, rev, nil
}

func (s *Store) toKV(k, v []byte, modRev int64) store.KV {
	return store.KV{Key: string(k[len(s.prefix):]), Value: bytes.Clone(v), ModRev: modRev}
}

func (s *Store) listGet(ctx context.Context, start string, opts []clientv3.OpOption) ([]store.KV, int64, error) {
	resp, err := s.cli.Get(ctx, start, opts...)
	if err != nil {
		return nil, 0, err
	}
	kvs := make([]store.KV, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		kvs = append(kvs, s.toKV(kv.Key, kv.Value, kv.ModRevision))
	}
	return kvs, resp.Header.Revision, nil
}

func (s *Store) listStream(ctx context.Context, start string, opts []clientv3.OpOption) ([]store.KV, int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := s.cli.GetStream(ctx, start, opts...)
	if err != nil {
		return nil, 0, err
	}
	var (
		kvs []store.KV
		rev int64
	)
	for r := range ch {
		if err := r.Err(); err != nil {
			return nil, 0, err
		}
		for _, kv := range r.Kvs {
			kvs = append(kvs, s.toKV(kv.Key, kv.Value, kv.ModRevision))
		}
		if r.Header != nil {
			rev = r.Header.Revision
		}
	}
	if rev == 0 {
		return nil, 0, errors.New("range stream ended without a header")
	}
	return kvs, rev, nil
}

// Rev implements store.Store.
func (s *Store) Rev(ctx context.Context) (int64, error) {
	if err := s.enter(); err != nil {
		return 0, err
	}
	defer s.calls.Done()
	return s.rev(ctx)
}

func (s *Store) rev(ctx context.Context) (int64, error) {
	cctx, cancel := s.callCtx(ctx)
	defer cancel()
	// A count of one key that is never written: the header carries the
	// revision, linearizably.
	resp, err := s.cli.Get(cctx, s.prefix, clientv3.WithCountOnly())
	if err != nil {
		return 0, s.mapErr(ctx, "reading the store revision", err)
	}
	s.markUp()
	s.noteCluster(resp.Header.ClusterId)
	return resp.Header.Revision, nil
}

// Txn implements store.Store. Several operations on one key are reduced to
// the last of them, since etcd refuses a transaction that writes a key
// twice. More than MaxTxnOps operations or conditions are refused with an
// error wrapping store.ErrTooLarge.
func (s *Store) Txn(ctx context.Context, conds []store.Cond, ops []store.Op) (int64, error) {
	if err := s.enter(); err != nil {
		return 0, err
	}
	defer s.calls.Done()
	for _, c := range conds {
		if err := store.ValidateKey(c.Key); err != nil {
			return 0, fmt.Errorf("txn condition: %w", err)
		}
	}
	size := 0
	for _, op := range ops {
		if err := store.ValidateKey(op.Key); err != nil {
			return 0, fmt.Errorf("txn op: %w", err)
		}
		if op.Type != store.OpPut && op.Type != store.OpDelete {
			return 0, fmt.Errorf("txn op on %q: unknown op type %d", op.Key, op.Type)
		}
		size += len(s.prefix) + len(op.Key) + len(op.Value)
	}
	ops = lastPerKey(ops)
	switch {
	case len(ops) > MaxTxnOps:
		return 0, fmt.Errorf("txn of %d operations: etcd allows at most %d in one transaction: %w", len(ops), MaxTxnOps, store.ErrTooLarge)
	case len(conds) > MaxTxnOps:
		return 0, fmt.Errorf("txn of %d conditions: etcd allows at most %d in one transaction: %w", len(conds), MaxTxnOps, store.ErrTooLarge)
	case size > MaxRequestBytes:
		return 0, fmt.Errorf("txn of %d bytes of keys and values: etcd allows at most %d in one request: %w", size, MaxRequestBytes, store.ErrTooLarge)
	}
	cmps := make([]clientv3.Cmp, 0, len(conds))
	var orElse []clientv3.Op
	for _, c := range conds {
		k := s.full(c.Key)
		if c.ModRev == 0 {
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(k), "=", 0))
		} else {
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", c.ModRev))
		}
		orElse = append(orElse, clientv3.OpGet(k, clientv3.WithKeysOnly()))
	}
	then := make([]clientv3.Op, 0, len(ops))
	for _, op := range ops {
		if op.Type == store.OpPut {
			then = append(then, clientv3.OpPut(s.full(op.Key), string(op.Value)))
		} else {
			then = append(then, clientv3.OpDelete(s.full(op.Key)))
		}
	}
	if len(then) == 0 {
		// etcd serves a transaction whose branches hold only serializable
		// reads (vacuously, an empty one) from the local member, which may
		// lag: one linearizable read makes the revision current.
		then = append(then, clientv3.OpGet(s.prefix, clientv3.WithCountOnly()))
	}
	cctx, cancel := s.callCtx(ctx)
	defer cancel()
	resp, err := s.cli.Txn(cctx).If(cmps...).Then(then...).Else(orElse...).Commit()
	if err != nil {
		return 0, s.mapErr(ctx, fmt.Sprintf("txn of %d ops", len(ops)), err)
	}
	s.markUp()
	if !resp.Succeeded {
		return 0, conflictError(conds, resp)
	}
	return resp.Header.Revision, nil
}

// conflictError names the first condition that did not hold, from the keys
// the failed transaction read instead.
func conflictError(conds []store.Cond, resp *clientv3.TxnResponse) error {
	for i, c := range conds {
		var modRev int64
		if i < len(resp.Responses) {
			if r := resp.Responses[i].GetResponseRange(); r != nil && len(r.Kvs) > 0 {
				modRev = r.Kvs[0].ModRevision
			}
		}
		switch {
		case c.ModRev == 0 && modRev != 0:
			return fmt.Errorf("txn condition on %q: key exists at revision %d, want absent: %w", c.Key, modRev, store.ErrConflict)
		case c.ModRev != 0 && modRev == 0:
			return fmt.Errorf("txn condition on %q: key is absent, want revision %d: %w", c.Key, c.ModRev, store.ErrConflict)
		case c.ModRev != 0 && modRev != c.ModRev:
			return fmt.Errorf("txn condition on %q: key is at revision %d, want %d: %w", c.Key, modRev, c.ModRev, store.ErrConflict)
		}
	}
	return fmt.Errorf("txn: a condition changed while it was checked: %w", store.ErrConflict)
}

// lastPerKey keeps only the last operation on each key, in the order of
// those last operations; the outcome of the transaction is the same.
func lastPerKey(ops []store.Op) []store.Op {
	if len(ops) < 2 {
		return ops
	}
	last := make(map[string]int, len(ops))
	for i, op := range ops {
		last[op.Key] = i
	}
	if len(last) == len(ops) {
		return ops
	}
	out := make([]store.Op, 0, len(last))
	for i, op := range ops {
		if last[op.Key] == i {
			out = append(out, op)
		}
	}
	return out
}

// Compact drops etcd's history of revisions before rev, so that a watch
// from before rev gets store.ErrCompacted. It implements storetest.Compactor.
func (s *Store) Compact(ctx context.Context, rev int64) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.calls.Done()
	cctx, cancel := s.callCtx(ctx)
	defer cancel()
	if _, err := s.cli.Compact(cctx, rev, clientv3.WithCompactPhysical()); err != nil {
		if errors.Is(err, rpctypes.ErrCompacted) {
			return nil // already compacted at or beyond rev
		}
		return s.mapErr(ctx, fmt.Sprintf("compacting to revision %d", rev), err)
	}
	return nil
}

// mapErr turns a client error into one wrapping the store's sentinels. ctx
// is the caller's: its own cancellation is reported as such.
func (s *Store) mapErr(ctx context.Context, what string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("%s: %w", what, cerr)
	}
	if s.ctx.Err() != nil {
		return fmt.Errorf("%s: %w", what, store.ErrClosed)
	}
	switch {
	case errors.Is(err, rpctypes.ErrCompacted), errors.Is(err, rpctypes.ErrFutureRev):
		return fmt.Errorf("%s: %w", what, store.ErrCompacted)
	case errors.Is(err, rpctypes.ErrNoSpace):
		return fmt.Errorf("%s: the etcd backend quota is exhausted (raise --quota-backend-bytes, compact and defragment): %w", what, store.ErrTooLarge)
	case errors.Is(err, rpctypes.ErrTooManyOps), errors.Is(err, rpctypes.ErrRequestTooLarge):
		return fmt.Errorf("%s: %v: %w", what, err, store.ErrTooLarge)
	}
	var code codes.Code
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		code = ee.Code()
	} else {
		code = status.Code(err)
	}
	switch code {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled, codes.Aborted, codes.Unknown:
	default:
		if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
	s.markDown(err)
	return fmt.Errorf("%s: etcd %v did not answer in time (%v): %w", what, s.opts.Endpoints, err, store.ErrUnavailable)
}
