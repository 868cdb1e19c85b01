package etcd

import (
	"context"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"gatehouse/internal/loop"
	"gatehouse/internal/store"
)

// Health is whether the cluster answered the store's last call or probe.
type Health struct {
	// Reachable is true when a quorum answered.
	Reachable bool `json:"reachable"`
	// Since is when Reachable last changed.
	Since time.Time `json:"since"`
	// Err describes the last failure while unreachable.
	Err string `json:"error,omitempty"`
}

// Health returns the store's view of the cluster without calling it: the
// outcome of the last call or of the periodic probe.
func (s *Store) Health() Health { return *s.health.Load() }

func (s *Store) markUp() {
	if h := s.health.Load(); h.Reachable {
		return
	}
	if s.health.Swap(&Health{Reachable: true, Since: time.Now()}).Reachable {
		return
	}
	s.log.Info("etcd reachable")
}

func (s *Store) markDown(err error) {
	h := s.health.Load()
	next := &Health{Since: time.Now(), Err: err.Error()}
	if !h.Reachable {
		next.Since = h.Since // still down: keep when it went down
		s.health.CompareAndSwap(h, next)
		return
	}
	if s.health.CompareAndSwap(h, next) {
		s.log.Warn("etcd unreachable: serving from what this node has; writes are refused", "endpoints", s.opts.Endpoints, "err", err)
	}
}

// healthLoop probes the cluster every HealthInterval until Close.
func (s *Store) healthLoop() {
	loop.Every(s.ctx, s.opts.HealthInterval, func() {
		ctx, cancel := context.WithTimeout(s.ctx, s.opts.HealthInterval)
		s.probe(ctx)
		cancel()
	})
}

// probe checks that a quorum answers a linearizable read and refreshes the
// usage from one member's status.
func (s *Store) probe(ctx context.Context) {
	resp, err := s.cli.Get(ctx, s.prefix, clientv3.WithCountOnly())
	if err != nil {
		if s.ctx.Err() == nil {
			s.markDown(err)
		}
		return
	}
	s.markUp()
	s.noteCluster(resp.Header.ClusterId)
	for _, ep := range s.cli.Endpoints() {
		st, err := s.cli.Status(ctx, ep)
		if err != nil {
			continue
		}
		s.usage.Store(&usageAt{u: store.Usage{Bytes: st.DbSize, QuotaBytes: st.DbSizeQuota, Keys: -1}, at: time.Now()})
		return
	}
}

// Usage implements store.Sizer: the backend database size of a member and
// the cluster's backend quota, as of the last probe. Keys is -1 (counting a
// prefix of a million keys costs etcd a walk of its index). While the
// cluster is unreachable it returns an error wrapping store.ErrUnavailable
// at once.
func (s *Store) Usage(ctx context.Context) (store.Usage, error) {
	if err := s.enter(); err != nil {
		return store.Usage{}, err
	}
	defer s.calls.Done()
	if h := s.Health(); !h.Reachable {
		return store.Usage{}, fmt.Errorf("etcd usage: %s: %w", h.Err, store.ErrUnavailable)
	}
	u := s.usage.Load()
	if u == nil || time.Since(u.at) > 3*s.opts.HealthInterval {
		pctx, cancel := s.callCtx(ctx)
		s.probe(pctx)
		cancel()
		if u = s.usage.Load(); u == nil {
			return store.Usage{}, errors.New("etcd usage: no member reported its status")
		}
	}
	return u.u, nil
}
