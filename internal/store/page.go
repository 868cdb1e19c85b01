package store

import (
	"context"
	"errors"
	"iter"
)

// All yields every key under prefix of st in key order, reading pageSize
// keys per List call (pageSize <= 0: one call). The first error ends the
// sequence. A listing over several pages may mix revisions.
func All(ctx context.Context, st Store, prefix string, pageSize int) iter.Seq2[KV, error] {
	return func(yield func(KV, error) bool) {
		pages(ctx, st, prefix, pageSize, nil, yield)
	}
}

// pages is All that also reports the revision of the first page to firstRev.
func pages(ctx context.Context, st Store, prefix string, pageSize int, firstRev func(int64), yield func(KV, error) bool) {
	after := ""
	for first := true; ; first = false {
		kvs, rev, err := st.List(ctx, prefix, after, max(pageSize, 0))
		if err != nil {
			yield(KV{}, err)
			return
		}
		if first && firstRev != nil {
			firstRev(rev)
		}
		for _, kv := range kvs {
			if !yield(kv, nil) {
				return
			}
		}
		if pageSize <= 0 || len(kvs) < pageSize {
			return
		}
		after = kvs[len(kvs)-1].Key
	}
}

// Listing is the state under a prefix, read as it is consumed: Follow and
// Load hand one to Handler.Reset.
type Listing struct {
	ctx      context.Context
	st       Store
	prefix   string
	pageSize int
	stream   bool
	rev      int64
	done     bool // All ran to its end without error
}

// Prefix returns the listed prefix.
func (l *Listing) Prefix() string { return l.prefix }

// All yields the keys under the prefix in key order; the first error ends
// it. It may be ranged over once. When the listing streams
// (FollowOptions.Stream and a Scanner store), Value is valid only until
// the next step and ModRev is 0.
func (l *Listing) All() iter.Seq2[KV, error] {
	return func(yield func(KV, error) bool) {
		if sc, ok := l.st.(Scanner); ok && l.stream {
			stopped := false
			rev, err := sc.Scan(l.ctx, l.prefix, func(key, value []byte) error {
				if !yield(KV{Key: string(key), Value: value}, nil) {
					stopped = true
					return errStopped
				}
				return nil
			})
			switch {
			case stopped:
			case err != nil:
				yield(KV{}, err)
			default:
				l.rev, l.done = rev, true
			}
			return
		}
		var rev int64
		ok := true
		pages(l.ctx, l.st, l.prefix, l.pageSize, func(r int64) { rev = r }, func(kv KV, err error) bool {
			if err != nil {
				ok = false
				yield(kv, err)
				return false
			}
			ok = yield(kv, nil)
			return ok
		})
		if ok {
			l.rev, l.done = rev, true
		}
	}
}

// Rev is the revision the listing reflects (with pages, the first's), once
// All has run to its end.
func (l *Listing) Rev() int64 { return l.rev }

var errStopped = errors.New("listing stopped by its consumer")
