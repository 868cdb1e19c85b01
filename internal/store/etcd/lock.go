package etcd

import (
	"context"
	"errors"
	"math"
	"strings"
	"time"

	"go.etcd.io/etcd/client/v3/concurrency"
)

// ErrLocked is returned by TryLock when another holder has the lock.
var ErrLocked = errors.New("etcd: locked by another holder")

// Lock is a fleet-wide lock held under an etcd lease: it ends when
// Unlock is called or when the lease expires (the holder died or lost etcd
// for longer than the lease's TTL), which Lost reports.
type Lock struct {
	sess *concurrency.Session
	mu   *concurrency.Mutex
}

// Lost is closed when the lease behind the lock ends.
func (l *Lock) Lost() <-chan struct{} { return l.sess.Done() }

// Unlock releases the lock and revokes its lease.
func (l *Lock) Unlock(ctx context.Context) error {
	err := l.mu.Unlock(ctx)
	l.sess.Orphan()
	_, rerr := l.sess.Client().Revoke(ctx, l.sess.Lease())
	return errors.Join(err, rerr)
}

// lockPrefix keeps lock keys out of the store's own key space.
func (s *Store) lockPrefix(name string) string {
	return strings.TrimSuffix(s.prefix, "/") + "-locks/" + name
}

// TryLock takes the lock name for this process under a lease of ttl
// (rounded up to whole seconds), or returns ErrLocked at once if another
// holder has it. A holder that dies loses the lock when its lease expires.
func (s *Store) TryLock(ctx context.Context, name string, ttl time.Duration) (*Lock, error) {
	secs := max(1, int(math.Ceil(ttl.Seconds())))
	sess, err := concurrency.NewSession(s.cli, concurrency.WithTTL(secs), concurrency.WithContext(s.ctx))
	if err != nil {
		return nil, s.mapErr(ctx, "lock "+name, err)
	}
	mu := concurrency.NewMutex(sess, s.lockPrefix(name))
	cctx, cancel := s.callCtx(ctx)
	defer cancel()
	if err := mu.TryLock(cctx); err != nil {
		sess.Orphan()
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		_, _ = s.cli.Revoke(rctx, sess.Lease())
		rcancel()
		if errors.Is(err, concurrency.ErrLocked) {
			return nil, ErrLocked
		}
		return nil, s.mapErr(ctx, "lock "+name, err)
	}
	return &Lock{sess: sess, mu: mu}, nil
}
