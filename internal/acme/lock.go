package acme

import (
	"context"
	"errors"
	"sync"
	"time"

	"gatehouse/internal/store"
	"gatehouse/internal/store/etcd"
)

// errLocked means another holder orders the name.
var errLocked = errors.New("another node is ordering this name")

// nameLock is held while one name is ordered.
type nameLock interface {
	// lost is closed if the lock is lost before it is released (its lease
	// expired); nil for a lock that cannot be lost.
	lost() <-chan struct{}
	release()
}

// locker takes per-name locks: an etcd lease-based lock on a fleet (a
// node that dies mid-order loses it when its lease expires), an in-process
// lock on the embedded store (one process owns the file).
type locker interface {
	tryLock(ctx context.Context, name string) (nameLock, error)
}

// lockTTL is the lease of an order's lock on etcd.
const lockTTL = 10 * time.Second

// inProgressFor is how long after an order starts other nodes wait before
// trying the name again: the lock's lease plus a margin.
const inProgressFor = lockTTL + 5*time.Second

func newLocker(st store.Store) locker {
	if e, ok := st.(*etcd.Store); ok {
		return etcdLocker{e}
	}
	return &localLocker{held: map[string]bool{}}
}

type etcdLocker struct{ st *etcd.Store }

type etcdLock struct{ l *etcd.Lock }

func (l etcdLock) lost() <-chan struct{} { return l.l.Lost() }
func (l etcdLock) release() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = l.l.Unlock(ctx) // the lease ends with its TTL otherwise
}

func (e etcdLocker) tryLock(ctx context.Context, name string) (nameLock, error) {
	l, err := e.st.TryLock(ctx, "acme/"+name, lockTTL)
	if errors.Is(err, etcd.ErrLocked) {
		return nil, errLocked
	}
	if err != nil {
		return nil, err
	}
	return etcdLock{l}, nil
}

type localLocker struct {
	mu   sync.Mutex
	held map[string]bool
}

type localLock struct {
	l    *localLocker
	name string
}

func (l localLock) lost() <-chan struct{} { return nil }
func (l localLock) release() {
	l.l.mu.Lock()
	delete(l.l.held, l.name)
	l.l.mu.Unlock()
}

func (l *localLocker) tryLock(_ context.Context, name string) (nameLock, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held[name] {
		return nil, errLocked
	}
	l.held[name] = true
	return localLock{l, name}, nil
}
