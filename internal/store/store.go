// Package store defines the contract of Gatehouse's dynamic-state store:
// tenants, hostnames, certificate bundles, incidents and health history.
//
// Two implementations satisfy it: internal/store/bolt (the embedded default,
// one file in the data directory) and, for fleets, an etcd v3 store. Both are
// proven by the conformance suite in internal/store/storetest.
package store

import (
	"net/http"

	"context"
	"errors"
	"fmt"
	"gatehouse/internal/fault"
)

// Contract errors, checked with errors.Is.
var (
	// ErrNotFound is returned by Get for a key that does not exist.
	ErrNotFound = fault.New(fault.ErrNotFound, "store: key not found")
	// ErrConflict is returned by Txn when one of its conditions does not hold;
	// nothing of the transaction was applied.
	ErrConflict = fault.New(fault.ErrConflict, "store: condition failed")
	// ErrCompacted is delivered on a watch whose start revision is older than
	// the oldest revision the store still keeps; the watcher must revalidate
	// by listing and watch again from the list's revision.
	ErrCompacted = errors.New("store: revision compacted")
	// ErrClosed is returned by calls on a closed store.
	ErrClosed = fault.New(fault.ErrUnavailable, "store: closed")
	// ErrUnavailable wraps failures to reach a remote store.
	ErrUnavailable = fault.New(fault.ErrUnavailable, "store: unavailable")
	// ErrTooLarge is returned when a value or transaction exceeds the
	// store's size limits or quota; nothing was applied.
	ErrTooLarge = fault.WithAnswer(fault.ErrLimit, "store: too large", http.StatusInsufficientStorage, "quota_exceeded")
)

// KV is a key, its value and the revision of the store at which it was last
// modified. Values returned to callers are owned by them.
type KV struct {
	Key    string
	Value  []byte
	ModRev int64
}

// OpType is the kind of a write operation.
type OpType uint8

// Write operations.
const (
	OpPut OpType = iota + 1
	OpDelete
)

// Op is one write inside a transaction.
type Op struct {
	Type  OpType
	Key   string
	Value []byte
}

// Put returns an operation that sets key to value.
func Put(key string, value []byte) Op { return Op{Type: OpPut, Key: key, Value: value} }

// Delete returns an operation that removes key (a no-op if absent).
func Delete(key string) Op { return Op{Type: OpDelete, Key: key} }

// Cond is a precondition of a transaction on one key's modification revision.
// ModRev 0 means the key must not exist; any other value means the key must
// exist and have been last modified at exactly that revision.
type Cond struct {
	Key    string
	ModRev int64
}

// Absent is the condition that key does not exist.
func Absent(key string) Cond { return Cond{Key: key} }

// EventType is the kind of a watched change.
type EventType uint8

// Watched change kinds.
const (
	EventPut EventType = iota + 1
	EventDelete
)

// Event is one change seen by a watch. For EventDelete, KV.Value is nil and
// KV.ModRev is the revision of the deletion.
type Event struct {
	Type EventType
	KV   KV
}

// WatchResponse is a batch of events, all from one revision (one
// transaction), in the order they were applied. Rev is that revision. A
// response with Err set is the last on its channel.
type WatchResponse struct {
	Events []Event
	Rev    int64
	Err    error
}

// Store is the dynamic-state store.
//
// Implementations are safe for concurrent use, honour the context of every
// call, and copy values in and out (a caller may keep or modify what it got).
// Every successful write advances a single store-wide revision; a transaction
// is one revision. Keys are non-empty UTF-8 strings; '/' separates levels by
// convention only.
type Store interface {
	// Get returns the value of key, or an error wrapping ErrNotFound.
	Get(ctx context.Context, key string) (KV, error)

	// List returns up to limit keys with the given prefix, in byte order,
	// starting strictly after startAfter ("" starts at the prefix). limit <= 0
	// means no limit. It also returns the store revision the listing reflects.
	// To page, pass the last key returned as the next startAfter.
	List(ctx context.Context, prefix, startAfter string, limit int) (kvs []KV, rev int64, err error)

	// Txn applies ops atomically if every condition holds, and returns the new
	// revision. If a condition fails nothing is applied and the error wraps
	// ErrConflict. A transaction with no ops returns the current revision.
	Txn(ctx context.Context, conds []Cond, ops []Op) (rev int64, err error)

	// Watch streams the changes to keys under prefix with a revision greater
	// than fromRev (fromRev 0: changes from now on). The channel is closed when
	// ctx is done or the store is closed. If fromRev is older than the store
	// keeps, the first and last response carries ErrCompacted.
	Watch(ctx context.Context, prefix string, fromRev int64) <-chan WatchResponse

	// Rev returns the current store revision.
	Rev(ctx context.Context) (int64, error)

	// Close releases the store. Watches end; later calls return ErrClosed.
	Close() error
}

// Usage is the size of a store against its quota, for the capacity registry.
type Usage struct {
	Bytes      int64 // bytes used on disk (or in the backend)
	QuotaBytes int64 // 0 when the store has no quota
	Keys       int64 // number of live keys, -1 if unknown
}

// Sizer is implemented by stores that can report their size (bolt, etcd);
// see also the other optional capabilities in capability.go.
type Sizer interface {
	Usage(ctx context.Context) (Usage, error)
}

// PutKV is a convenience for a single unconditional put.
func PutKV(ctx context.Context, s Store, key string, value []byte) (int64, error) {
	return s.Txn(ctx, nil, []Op{Put(key, value)})
}

// DeleteKey is a convenience for a single unconditional delete.
func DeleteKey(ctx context.Context, s Store, key string) (int64, error) {
	return s.Txn(ctx, nil, []Op{Delete(key)})
}

// ValidateKey reports whether key is acceptable to every backend.
func ValidateKey(key string) error {
	switch {
	case key == "":
		return errors.New("store: empty key")
	case len(key) > 1024:
		return fmt.Errorf("store: key of %d bytes exceeds 1024", len(key))
	}
	return nil
}
