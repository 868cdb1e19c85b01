package etcd

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"go.etcd.io/etcd/client/v3/concurrency"

	"gatehouse/internal/loop"
)

// DefaultElectionTTL is the lease of a leader: how long after a leader
// dies (or loses etcd) another node takes over.
const DefaultElectionTTL = 10 * time.Second

// electionPrefix keeps election keys out of the store's own key space, so
// that listings and migrations never see them.
func (s *Store) electionPrefix(name string) string {
	return strings.TrimSuffix(s.prefix, "/") + "-elections/" + name + "/"
}

// RunElected runs fn on one node of the fleet at a time: it campaigns for
// the leadership of name as id (a node name for logs), runs fn with a
// context that ends when the leadership is lost (the lease of ttl expired,
// for example because etcd was unreachable that long), and campaigns again
// when fn returns early. A leader that dies stops renewing its lease, and
// another node's campaign wins within ttl. RunElected returns when ctx is
// done or the store is closed; a leader then resigns at once. ttl is
// rounded up to whole seconds (0: DefaultElectionTTL).
func (s *Store) RunElected(ctx context.Context, name, id string, ttl time.Duration, fn func(ctx context.Context)) error {
	if ttl <= 0 {
		ttl = DefaultElectionTTL
	}
	secs := int(math.Ceil(ttl.Seconds()))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(s.ctx, cancel)()
	log := s.log.With("election", name, "id", id)
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		sess, err := concurrency.NewSession(s.cli, concurrency.WithTTL(secs), concurrency.WithContext(ctx))
		if err != nil {
			log.Debug("election: no session", "err", err)
			if !loop.Sleep(ctx, backoff) {
				break
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		el := concurrency.NewElection(sess, s.electionPrefix(name))
		if err := el.Campaign(ctx, id); err != nil {
			sess.Orphan()
			if ctx.Err() == nil {
				log.Debug("election: campaign failed", "err", err)
				loop.Sleep(ctx, backoff)
			}
			continue
		}
		backoff = 100 * time.Millisecond
		log.Info("elected: running fleet-once work")
		lctx, lcancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-sess.Done():
				lcancel()
			case <-lctx.Done():
			}
		}()
		fn(lctx)
		lost := lctx.Err() != nil && ctx.Err() == nil
		lcancel()
		if s.Reachable() {
			rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			_ = el.Resign(rctx)
			rcancel()
			sess.Orphan() // the lease ends with its TTL if the revoke below fails
			rctx, rcancel = context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			_, _ = s.cli.Revoke(rctx, sess.Lease())
			rcancel()
		} else {
			// etcd does not answer: the lease ends with its TTL; waiting
			// here would only hold up a shutdown.
			sess.Orphan()
		}
		if lost {
			log.Warn("lost the leadership (lease expired)")
		} else {
			log.Info("resigned the leadership")
		}
	}
	if s.ctx.Err() != nil {
		return fmt.Errorf("election %s: store closed", name)
	}
	return ctx.Err()
}
