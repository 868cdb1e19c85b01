package store

import "context"

// Optional capabilities. A Store may implement any of these; callers
// discover them with a type assertion and fall back to the Store contract
// when absent. The conformance suite (internal/store/storetest) checks
// each one a backend has.

// Scanner is implemented by stores that stream a prefix at one revision
// without copying it (bolt, etcd).
type Scanner interface {
	// Scan calls fn for every key under prefix, in key order, at one
	// revision, and returns that revision. key and value are valid only
	// during the call and must not be modified. An error from fn stops the
	// scan and is returned. A scan outlived by compaction fails with an
	// error wrapping ErrCompacted.
	Scan(ctx context.Context, prefix string, fn func(key, value []byte) error) (rev int64, err error)
}

// ProgressWatcher is implemented by stores whose watch can report that it
// has delivered every change up to a revision (etcd).
type ProgressWatcher interface {
	// WatchProgress is Watch that also delivers progress reports: a
	// response with no events and Rev r means every change under prefix
	// up to r has been delivered.
	WatchProgress(ctx context.Context, prefix string, fromRev int64) <-chan WatchResponse
	// RequestProgress asks for a progress report on every watch of the
	// store that has caught up with the current revision.
	RequestProgress(ctx context.Context) error
}

// Compactor is implemented by stores whose event history can be compacted
// on demand (bolt, etcd).
type Compactor interface {
	// Compact drops the history of revisions up to and including rev, so
	// that a watch from before rev gets ErrCompacted. rev must not be
	// ahead of the store.
	Compact(ctx context.Context, rev int64) error
}

// Remote is implemented by stores on other machines (etcd), for which a
// node keeps local copies and fails fast while the store does not answer.
type Remote interface {
	// Identity names the store's data (its cluster and prefix): two
	// stores with the same identity hold the same history.
	Identity(ctx context.Context) (string, error)
	// Reachable reports whether the store answered its last call or
	// health probe, without calling it.
	Reachable() bool
}

// SerializableGetter is implemented by stores that can answer a read from
// the replica they are connected to, without a round of consensus (etcd).
// Such a read may lag the latest writes by the replication delay.
type SerializableGetter interface {
	// GetSerializable is Get answered by the connected replica.
	GetSerializable(ctx context.Context, key string) (KV, error)
}
