package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
)

// CounterPrefix holds the counters kept beside the data they count (see
// ReadCounter); no watch of the data's prefix sees them.
const CounterPrefix = "counters/"

// Counted is the value of a counter key and the condition under which it
// was read: a write that changes what the counter counts carries Cond and
// Op(new value) in its own transaction, so that two writers anywhere in a
// fleet cannot both pass a limit on the count (one of them gets
// ErrConflict, reads again and decides again).
type Counted struct {
	Key   string
	Value int64
	Cond  Cond
}

// Op returns the operation that sets the counter to v.
func (c Counted) Op(v int64) Op { return Put(c.Key, []byte(strconv.FormatInt(v, 10))) }

// ReadCounter reads the counter at key. A counter that does not exist yet
// (a store written by a version that kept none, or never written) is
// initialized from a count of the keys under prefix, read at one revision;
// its Cond is then Absent(key), so the first write that stores it fails
// with ErrConflict if another writer initialized it meanwhile.
func ReadCounter(ctx context.Context, st Store, key, prefix string) (Counted, error) {
	kv, err := st.Get(ctx, key)
	switch {
	case err == nil:
		v, perr := strconv.ParseInt(string(kv.Value), 10, 64)
		if perr != nil || v < 0 {
			return Counted{}, fmt.Errorf("counter %s holds %q, not a count", key, kv.Value)
		}
		return Counted{Key: key, Value: v, Cond: Cond{Key: key, ModRev: kv.ModRev}}, nil
	case !errors.Is(err, ErrNotFound):
		return Counted{}, fmt.Errorf("reading counter %s: %w", key, err)
	}
	n, err := CountPrefix(ctx, st, prefix)
	if err != nil {
		return Counted{}, fmt.Errorf("initializing counter %s: %w", key, err)
	}
	return Counted{Key: key, Value: n, Cond: Absent(key)}, nil
}

// CountPrefix counts the keys under prefix: at one revision on a Scanner,
// else by pages.
func CountPrefix(ctx context.Context, st Store, prefix string) (int64, error) {
	var n int64
	if sc, ok := st.(Scanner); ok {
		_, err := sc.Scan(ctx, prefix, func(_, _ []byte) error { n++; return nil })
		return n, err
	}
	for _, err := range All(ctx, st, prefix, 10000) {
		if err != nil {
			return 0, err
		}
		n++
	}
	return n, nil
}
