package store

import (
	"context"
	"sync"
)

// Applied is the store revision a follower (see Follow) has applied, for
// writers that return only once this node reflects their write: the
// follower calls Advance after each applied transaction, a writer calls
// Wait with its write's revision. The zero value is ready to use.
type Applied struct {
	mu  sync.Mutex
	rev int64
	// advanced is closed, and replaced, whenever rev advances.
	advanced chan struct{}
}

// Advance records that everything up to rev is applied; a lower rev than
// the last changes nothing.
func (a *Applied) Advance(rev int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if rev <= a.rev {
		return
	}
	a.rev = rev
	if a.advanced != nil {
		close(a.advanced)
		a.advanced = nil
	}
}

// Rev is the revision applied so far.
func (a *Applied) Rev() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.rev
}

// Wait returns true once rev is applied, or false when ctx ends first.
func (a *Applied) Wait(ctx context.Context, rev int64) bool {
	for {
		a.mu.Lock()
		if a.rev >= rev {
			a.mu.Unlock()
			return true
		}
		if a.advanced == nil {
			a.advanced = make(chan struct{})
		}
		ch := a.advanced
		a.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
}
