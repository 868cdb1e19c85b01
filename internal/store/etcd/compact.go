package etcd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"gatehouse/internal/loop"
)

// Compaction defaults.
const (
	// DefaultRetention is how long etcd keeps the history of revisions
	// under RunCompaction: a node that was away for less than this resumes
	// its watches where it left off; one away longer relists.
	DefaultRetention = 24 * time.Hour
	// maxMarks bounds the revision marks kept between compactions.
	maxMarks = 1000
)

// CompactionOptions configure RunCompaction and CompactOnce.
type CompactionOptions struct {
	// Retention is how long the history of revisions is kept: each
	// compaction drops the revisions that were already current Retention
	// ago (0: DefaultRetention). Choose it longer than the longest expected
	// node downtime.
	Retention time.Duration
	// Interval is how often the current revision is recorded and a
	// compaction considered (0: Retention/24).
	Interval time.Duration
	// Now returns the current time (nil: time.Now).
	Now func() time.Time
}

func (o *CompactionOptions) defaults() {
	if o.Retention <= 0 {
		o.Retention = DefaultRetention
	}
	if o.Interval <= 0 {
		o.Interval = o.Retention / 24
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// revMark records that the store was at Rev at time At.
type revMark struct {
	At  time.Time `json:"at"`
	Rev int64     `json:"rev"`
}

type marksDoc struct {
	Marks     []revMark `json:"marks"`
	Compacted int64     `json:"compacted"`
}

// marksKey keeps the compaction marks outside the store's key space, so
// that listings, watches and migrations never see them.
func (s *Store) marksKey() string {
	return strings.TrimSuffix(s.prefix, "/") + "-compaction/marks"
}

// RunCompaction compacts etcd's history on a schedule until ctx is done:
// every Interval it records the current revision with the time, and
// compacts to the newest recorded revision that is at least Retention old.
// The marks live in etcd, so the node that takes over after an election
// continues the schedule. Run it on one node at a time (RunElected). It
// compacts the whole cluster's history, not only this store's prefix, as
// etcd's revisions are cluster-wide.
func (s *Store) RunCompaction(ctx context.Context, opts CompactionOptions) {
	opts.defaults()
	compact := func() {
		if rev, err := s.CompactOnce(ctx, opts); err != nil && ctx.Err() == nil {
			s.log.Warn("scheduled compaction", "err", err)
		} else if rev > 0 {
			s.log.Info("compacted etcd history", "rev", rev, "retention", opts.Retention)
		}
	}
	compact()
	loop.Every(ctx, opts.Interval, compact)
}

// CompactOnce records the current revision and compacts to the newest mark
// at least Retention old, if that is newer than the last compaction. It
// returns the revision it compacted to, or 0.
func (s *Store) CompactOnce(ctx context.Context, opts CompactionOptions) (int64, error) {
	opts.defaults()
	if err := s.enter(); err != nil {
		return 0, err
	}
	defer s.calls.Done()
	now := opts.Now()
	rev, err := s.rev(ctx)
	if err != nil {
		return 0, err
	}
	var doc marksDoc
	cctx, cancel := s.callCtx(ctx)
	defer cancel()
	resp, err := s.cli.Get(cctx, s.marksKey())
	if err != nil {
		return 0, s.mapErr(ctx, "reading compaction marks", err)
	}
	if len(resp.Kvs) > 0 {
		if err := json.Unmarshal(resp.Kvs[0].Value, &doc); err != nil {
			s.log.Warn("compaction marks unreadable; starting over", "key", s.marksKey(), "err", err)
			doc = marksDoc{}
		}
	}
	if n := len(doc.Marks); n == 0 || doc.Marks[n-1].Rev < rev {
		doc.Marks = append(doc.Marks, revMark{At: now.UTC(), Rev: rev})
	}
	var target int64
	keep := 0
	for i, m := range doc.Marks {
		if now.Sub(m.At) >= opts.Retention {
			target, keep = m.Rev, i+1
		}
	}
	doc.Marks = doc.Marks[keep:]
	if len(doc.Marks) > maxMarks {
		doc.Marks = doc.Marks[len(doc.Marks)-maxMarks:]
	}
	compacted := int64(0)
	if target > doc.Compacted {
		if _, err := s.cli.Compact(cctx, target); err != nil && !isCompacted(err) {
			return 0, s.mapErr(ctx, fmt.Sprintf("compacting to revision %d", target), err)
		}
		doc.Compacted, compacted = target, target
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return 0, fmt.Errorf("encoding compaction marks: %w", err)
	}
	if _, err := s.cli.Put(cctx, s.marksKey(), string(b)); err != nil {
		return compacted, s.mapErr(ctx, "writing compaction marks", err)
	}
	return compacted, nil
}

// isCompacted reports etcd's refusal to compact to a revision it already
// compacted past.
func isCompacted(err error) bool { return errors.Is(err, rpctypes.ErrCompacted) }
