package capacity

import (
	"context"
	"sync"
	"time"
)

// Caller is who asked for a change, as far as the admin API knows: the
// remote address, the identity of the credential and the request id.
type Caller struct {
	Remote    string
	Identity  string
	RequestID string
}

type callerKey struct{}

// WithCaller returns ctx carrying c, for the refusal log of Admit.
func WithCaller(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// CallerFrom returns the Caller of ctx; a change made without the admin
// API (an offline import) has Remote "local".
func CallerFrom(ctx context.Context) Caller {
	if c, ok := ctx.Value(callerKey{}).(Caller); ok {
		return c
	}
	return Caller{Remote: "local"}
}

// refusalMinutes is how far back refusals are kept: a day, by minute.
const refusalMinutes = 24 * 60

// refusals counts refusals per minute over the last day, in a ring
// allocated at the first refusal.
type refusals struct {
	mu     sync.Mutex // guards counts and minute
	counts []int64
	minute []int64 // the minute (Unix time / 60) each slot counts
}

func (q *refusals) add(now time.Time) {
	m := now.Unix() / 60
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.counts == nil {
		q.counts, q.minute = make([]int64, refusalMinutes), make([]int64, refusalMinutes)
	}
	i := m % refusalMinutes
	if q.minute[i] != m {
		q.minute[i], q.counts[i] = m, 0
	}
	q.counts[i]++
}

// sum returns the refusals of the 24 hours up to now.
func (q *refusals) sum(now time.Time) int64 {
	m := now.Unix() / 60
	q.mu.Lock()
	defer q.mu.Unlock()
	var n int64
	for i, c := range q.counts {
		if q.minute[i] > m-refusalMinutes && q.minute[i] <= m {
			n += c
		}
	}
	return n
}

// take moves old's counts into q (a resource registered again).
func (q *refusals) take(old *refusals) {
	old.mu.Lock()
	defer old.mu.Unlock()
	q.counts, q.minute = old.counts, old.minute
}
