package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"gatehouse/internal/loop"
)

// Handler is what Follow keeps in step with the store. Follow calls it from
// one goroutine at a time, never Reset and Apply concurrently.
type Handler interface {
	// Reset replaces everything the handler holds of the prefix with the
	// listing l: it ranges over l.All to the end (or returns the error it
	// yields), then l.Rev is the revision the state reflects. Until Reset
	// returns, the handler must not discard what it served before: a
	// failed Reset (an error) leaves the previous state in place and
	// Follow tries again later. ctx ends when the follow does.
	Reset(ctx context.Context, l *Listing) error

	// Apply applies watched changes: one or more responses, each one
	// transaction, in revision order, every one newer than the last Reset
	// and delivered exactly once. Responses already waiting are handed
	// over together, so that a handler may publish once per batch. With
	// FollowOptions.Progress, a response with no events reports that every
	// change up to its Rev has been delivered.
	Apply(resps []WatchResponse)
}

// FollowOptions tune Follow. The zero value lists with one List call,
// begins with a Reset and logs nothing.
type FollowOptions struct {
	// Loaded says that the handler already holds the state as of FromRev
	// (from Load, or from a snapshot of its own): Follow watches from
	// there instead of beginning with a Reset.
	Loaded  bool
	FromRev int64

	// What names the followed state in log lines ("routes").
	What   string
	Logger *slog.Logger // nil: discard

	// Backoff paces retries after a failed watch or listing; zero:
	// DefaultBackoff.
	Backoff Backoff

	// PageSize is the number of keys per List call of a listing; 0 lists
	// in one call, at one revision. A listing over pages may mix
	// revisions: the watch from the first page's revision replays what
	// changed meanwhile, so Apply may see a change the listing already
	// showed (applying it again must be harmless).
	PageSize int
	// Stream lists with the store's Scanner when it has one: one
	// revision, no copies, Value valid only during the iteration step and
	// ModRev 0. Otherwise as PageSize says.
	Stream bool
	// Progress watches with the store's ProgressWatcher when it has one,
	// so that Apply also gets progress reports (responses without events).
	Progress bool
	// Resync, if not nil, asks for a Reset by a receive: the watch ends
	// and Follow lists again.
	Resync <-chan struct{}
}

// Backoff is a jittered exponential delay: the first retry waits about Min,
// each further one twice as long up to Max, and each wait is drawn from
// the upper half of its step so that a fleet that lost its store does not
// come back in lockstep.
type Backoff struct {
	Min, Max time.Duration
}

// DefaultBackoff is the retry pace of every store follower: 100 ms at
// first, so that a blip costs nothing; at most 10 s, so that a node serves
// at most about 10 s of stale state once the store is back, while a
// hundred nodes retrying cost a recovering cluster about 20 calls a
// second.
var DefaultBackoff = Backoff{Min: 100 * time.Millisecond, Max: 10 * time.Second}

// step returns the delay that follows d (0: the first).
func (b Backoff) step(d time.Duration) time.Duration {
	if d <= 0 {
		return b.Min
	}
	return min(2*d, b.Max)
}

// jitter draws the wait of step d from [d/2, d].
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

// Follower is one running Follow.
type Follower struct {
	st      Store
	prefix  string
	opts    FollowOptions
	h       Handler
	log     *slog.Logger
	cancel  context.CancelFunc
	done    chan struct{}
	err     error
	backoff time.Duration // the last wait; 0 after success
	fails   int           // failures since the last success
}

// Follow keeps h in step with the keys under prefix of st: unless
// opts.Loaded, it lists them and calls h.Reset; then it watches from the
// listing's revision and calls h.Apply with every change. When the store no
// longer has the history to resume from (ErrCompacted), or opts.Resync asks,
// it lists again and resets, until a listing succeeds: it never watches
// from a compacted revision. Any other failure (ErrUnavailable: the store
// cannot be reached) leaves h as it is, serving what it has, and is retried
// with opts.Backoff from the last revision applied. Each failure is logged
// once with the wait before the retry, and the recovery once.
//
// Follow returns at once; with opts.Loaded the first watch is already open
// (a change made after Follow returns is not missed). The goroutine it
// starts ends when ctx is done, Stop is called or the store is closed; Done
// is closed then.
func Follow(ctx context.Context, st Store, prefix string, opts FollowOptions, h Handler) *Follower {
	if opts.Backoff.Min <= 0 {
		opts.Backoff.Min = DefaultBackoff.Min
	}
	if opts.Backoff.Max < opts.Backoff.Min {
		opts.Backoff.Max = max(opts.Backoff.Min, DefaultBackoff.Max)
	}
	if opts.What == "" {
		opts.What = fmt.Sprintf("%q", prefix)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(ctx)
	f := &Follower{st: st, prefix: prefix, opts: opts, h: h, log: log, cancel: cancel, done: make(chan struct{})}
	var w *watching
	if opts.Loaded {
		w = f.watch(ctx, opts.FromRev)
	}
	go f.run(ctx, w)
	return f
}

// Done is closed when the follow has ended.
func (f *Follower) Done() <-chan struct{} { return f.done }

// Stop ends the follow and waits for its goroutine. Stop on a nil
// Follower does nothing, so that an owner's Close may call it whether or
// not it started one.
func (f *Follower) Stop() {
	if f == nil {
		return
	}
	f.cancel()
	<-f.done
}

// Err reports, once Done is closed, why the follow ended: ctx's error, or
// an error wrapping ErrClosed.
func (f *Follower) Err() error {
	<-f.done
	return f.err
}

// Load lists the keys under prefix of st as opts says (PageSize, Stream),
// hands the listing to h.Reset and returns the revision it reflects: the
// first step of Follow, for a caller that must hold the state before it goes
// on (then Follow with Loaded and FromRev).
func Load(ctx context.Context, st Store, prefix string, opts FollowOptions, h Handler) (int64, error) {
	l := &Listing{ctx: ctx, st: st, prefix: prefix, pageSize: opts.PageSize, stream: opts.Stream}
	if err := h.Reset(ctx, l); err != nil {
		return 0, err
	}
	if !l.done {
		return 0, fmt.Errorf("listing %q: the handler's Reset returned before the end of the listing", prefix)
	}
	return l.rev, nil
}

type watching struct {
	ch     <-chan WatchResponse
	cancel context.CancelFunc
	from   int64
}

func (f *Follower) watch(ctx context.Context, rev int64) *watching {
	wctx, cancel := context.WithCancel(ctx)
	w := &watching{cancel: cancel, from: rev}
	if pw, ok := f.st.(ProgressWatcher); ok && f.opts.Progress {
		w.ch = pw.WatchProgress(wctx, f.prefix, rev)
	} else {
		w.ch = f.st.Watch(wctx, f.prefix, rev)
	}
	return w
}

// errResync ends a watch on a receive from FollowOptions.Resync.
var errResync = errors.New("relisting requested")

func (f *Follower) run(ctx context.Context, w *watching) {
	defer close(f.done)
	defer f.cancel()
	rev, needReset := f.opts.FromRev, !f.opts.Loaded
	for {
		if ctx.Err() != nil {
			f.err = ctx.Err()
			return
		}
		if needReset {
			r, err := Load(ctx, f.st, f.prefix, f.opts, f.h)
			if err != nil {
				if f.ended(ctx, err) || !f.retry(ctx, "listing", err) {
					return
				}
				continue
			}
			rev, needReset = r, false
			f.recovered(rev)
		}
		if w == nil {
			w = f.watch(ctx, rev)
		}
		err := f.consume(ctx, w, &rev)
		w.cancel()
		w = nil
		switch {
		case err == nil:
			// State as of revision 0 (a store never written) is only
			// known to be current if no write came before the watch
			// began "from now on": otherwise list again.
			needReset = true
			continue
		case f.ended(ctx, err):
			return
		case errors.Is(err, ErrCompacted), errors.Is(err, errResync):
			f.log.Info("relisting "+f.opts.What, "rev", rev, "reason", err)
			needReset = true
			continue
		}
		if !f.retry(ctx, "watch", err) {
			return
		}
	}
}

// ended reports whether err (or ctx) ends the follow, and logs why.
func (f *Follower) ended(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		f.err = ctx.Err()
		return true
	}
	if errors.Is(err, ErrClosed) {
		f.log.Warn(f.opts.What + " watch ended: store closed")
		f.err = err
		return true
	}
	return false
}

// retry logs a failure and waits before the next attempt; false if ctx
// ended meanwhile.
func (f *Follower) retry(ctx context.Context, what string, err error) bool {
	f.backoff = f.opts.Backoff.step(f.backoff)
	f.fails++
	wait := jitter(f.backoff)
	f.log.Warn("following "+f.opts.What+": "+what+" failed; retrying", "err", err, "retry_in", wait.Round(time.Millisecond), "failures", f.fails)
	if !loop.Sleep(ctx, wait) {
		f.err = ctx.Err()
		return false
	}
	return true
}

// recovered notes a success, logging it if failures came before.
func (f *Follower) recovered(rev int64) {
	if f.fails > 0 {
		f.log.Info("following "+f.opts.What+" again", "rev", rev, "after_failures", f.fails)
	}
	f.fails, f.backoff = 0, 0
}

// maxBatch bounds the responses handed to one Apply.
const maxBatch = 1024

// consume applies w until it ends, and returns why: the response's error,
// errResync, ctx's error, ErrClosed if the channel closed while ctx lives,
// or nil if a watch from revision 0 may have missed a write.
func (f *Follower) consume(ctx context.Context, w *watching, rev *int64) error {
	if w.from == 0 {
		// Watch pinned "now" before returning; a write between the
		// listing and that moment shows as a revision above 0.
		cur, err := f.st.Rev(ctx)
		if err != nil {
			return err
		}
		if cur > 0 {
			return nil
		}
	}
	batch := make([]WatchResponse, 0, 1)
	for {
		var resp WatchResponse
		var ok bool
		select {
		case resp, ok = <-w.ch:
		case <-f.opts.Resync:
			return errResync
		case <-ctx.Done():
			return ctx.Err()
		}
		if !ok {
			return f.closedErr(ctx)
		}
		if resp.Err != nil {
			return resp.Err
		}
		batch = append(batch[:0], resp)
		var end error
	drain:
		for len(batch) < maxBatch {
			select {
			case more, ok := <-w.ch:
				switch {
				case !ok:
					end = f.closedErr(ctx)
				case more.Err != nil:
					end = more.Err
				default:
					batch = append(batch, more)
					continue
				}
				break drain
			default:
				break drain
			}
		}
		f.h.Apply(batch)
		for _, r := range batch {
			*rev = max(*rev, r.Rev)
		}
		f.recovered(*rev)
		clear(batch)
		if end != nil {
			return end
		}
	}
}

func (f *Follower) closedErr(ctx context.Context) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("watching %q: %w", f.prefix, ErrClosed)
}
