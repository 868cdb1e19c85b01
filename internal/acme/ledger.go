package acme

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"gatehouse/internal/acme/budget"
	"gatehouse/internal/store"
)

// The CA budgets are spent by every node of a fleet against one CA account,
// so their events live in the store, where every node follows them: the
// ledger. One key per event, under acme/budget/<kind>/<time>-<random>:
//
//	o  an order placed for an account          {"a": account}
//	c  a certificate issued for a set of names {"a": account, "n": [names]}
//	f  a failed validation of a name           {"n": [name]}
//	r  the CA's rateLimited answer             {"a": account, "u": until (Unix s)}
//
// A node spends a budget by writing its event; every node (the writer too)
// counts it when the watch delivers it, so a restart replays the events
// still inside their windows and `gatehouse limits` shows the fleet's use on
// every node. Events older than their window (plus a day) are deleted by the
// node's periodic sweep, so the ledger holds at most a window's worth of
// orders, certificates and failures.
const ledgerPrefix = "acme/budget/"

// Ledger event kinds.
const (
	ledgerOrder       = "o"
	ledgerCertificate = "c"
	ledgerFailure     = "f"
	ledgerRateLimited = "r"
)

// ledgerKeep is how long after an event its record is kept: its window and
// a day's margin (a node's clock may lag).
var ledgerKeep = map[string]time.Duration{
	ledgerOrder:       budget.OrdersWindow + 24*time.Hour,
	ledgerCertificate: budget.CertsPerDomainWindow + 24*time.Hour,
	ledgerFailure:     budget.FailedValidationsWindow + 24*time.Hour,
	ledgerRateLimited: 7*24*time.Hour + 24*time.Hour, // Retry-After is capped at 7 days
}

type ledgerEvent struct {
	Account string   `json:"a,omitempty"`
	Names   []string `json:"n,omitempty"`
	Until   int64    `json:"u,omitempty"`
}

// ledger spends budgets through the store and applies the fleet's events.
type ledger struct {
	st  store.Store
	bud *budget.Budgets
	log *slog.Logger
	now func() time.Time
}

// ledgerKey is an event's key: its kind, its time in nanoseconds
// (zero-padded, so keys sort by time within a kind) and a random suffix
// so that two nodes' events at one instant do not collide.
func ledgerKey(kind string, at time.Time) string {
	var r [4]byte
	_, _ = rand.Read(r[:])
	return fmt.Sprintf("%s%s/%020d-%s", ledgerPrefix, kind, at.UnixNano(), hex.EncodeToString(r[:]))
}

// spend writes one event. If the store refuses (unreachable, quota), the
// event is counted on this node only, so the node still stays inside its
// budgets, and a warning says the fleet does not see it.
func (l *ledger) spend(ctx context.Context, kind string, at time.Time, ev ledgerEvent) {
	b, err := json.Marshal(ev)
	if err == nil {
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		_, err = store.PutKV(wctx, l.st, ledgerKey(kind, at), b)
		cancel()
	}
	if err != nil {
		l.log.Warn("recording a CA budget event in the store failed; counted on this node only", "kind", kindName(kind), "err", err)
		l.apply(kind, at, ev)
	}
}

func kindName(kind string) string {
	switch kind {
	case ledgerOrder:
		return "order"
	case ledgerCertificate:
		return "certificate"
	case ledgerFailure:
		return "failed_validation"
	case ledgerRateLimited:
		return "rate_limited"
	}
	return kind
}

// parseLedgerKey returns an event key's kind and time.
func parseLedgerKey(key string) (kind string, at time.Time, ok bool) {
	rest, found := strings.CutPrefix(key, ledgerPrefix)
	if !found {
		return "", time.Time{}, false
	}
	kind, rest, found = strings.Cut(rest, "/")
	if !found {
		return "", time.Time{}, false
	}
	ts, _, _ := strings.Cut(rest, "-")
	ns, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || ns <= 0 {
		return "", time.Time{}, false
	}
	return kind, time.Unix(0, ns), true
}

// apply counts one event in the budgets.
func (l *ledger) apply(kind string, at time.Time, ev ledgerEvent) {
	switch kind {
	case ledgerOrder:
		l.bud.RecordOrder(ev.Account, at)
	case ledgerCertificate:
		if len(ev.Names) > 0 {
			l.bud.RecordCertificate(ev.Account, ev.Names, at)
		}
	case ledgerFailure:
		if len(ev.Names) == 1 {
			l.bud.RecordFailedValidation(ev.Names[0], at)
		}
	case ledgerRateLimited:
		if ev.Account != "" && ev.Until > 0 {
			l.bud.RateLimited(ev.Account, time.Unix(ev.Until, 0))
		}
	}
}

// applyKV decodes and applies one stored event; a record it cannot read
// (written by a later version, damaged) is skipped with a log line.
func (l *ledger) applyKV(key string, value []byte) {
	kind, at, ok := parseLedgerKey(key)
	var ev ledgerEvent
	if ok {
		ok = json.Unmarshal(value, &ev) == nil
	}
	if !ok {
		l.log.Warn("skipping an unreadable CA budget record", "key", key)
		return
	}
	l.apply(kind, at, ev)
}

// Reset recounts the budgets from a full listing (store.Handler).
func (l *ledger) Reset(_ context.Context, ls *store.Listing) error {
	type rec struct {
		key string
		val []byte
	}
	var recs []rec
	for kv, err := range ls.All() {
		if err != nil {
			return err
		}
		recs = append(recs, rec{kv.Key, append([]byte(nil), kv.Value...)})
	}
	// Only a complete listing replaces what is counted.
	l.bud.Reset()
	for _, r := range recs {
		l.applyKV(r.key, r.val)
	}
	return nil
}

// Apply counts watched events (store.Handler). Deletions are the sweep of
// events already outside their windows: nothing to undo.
func (l *ledger) Apply(resps []store.WatchResponse) {
	for _, resp := range resps {
		for _, ev := range resp.Events {
			if ev.Type == store.EventPut {
				l.applyKV(ev.KV.Key, ev.KV.Value)
			}
		}
	}
}

// sweep deletes the events older than their kind's keep time and returns
// how many it deleted. Keys sort by time within a kind, so each kind's
// listing stops at its first event still kept.
func (l *ledger) sweep(ctx context.Context) (int, error) {
	now := l.now()
	deleted := 0
	for kind, keep := range ledgerKeep {
		var ops []store.Op
		flush := func() error {
			if len(ops) == 0 {
				return nil
			}
			if _, err := l.st.Txn(ctx, nil, ops); err != nil {
				return err
			}
			deleted += len(ops)
			ops = ops[:0]
			return nil
		}
		for kv, err := range store.All(ctx, l.st, ledgerPrefix+kind+"/", 256) {
			if err != nil {
				return deleted, err
			}
			_, at, ok := parseLedgerKey(kv.Key)
			if ok && now.Sub(at) <= keep {
				break
			}
			ops = append(ops, store.Delete(kv.Key))
			if len(ops) == 64 {
				if err := flush(); err != nil {
					return deleted, err
				}
			}
		}
		if err := flush(); err != nil {
			return deleted, err
		}
	}
	return deleted, nil
}

// ledgerSweepEvery is how often a node deletes expired budget records.
const ledgerSweepEvery = 10 * time.Minute

// followLedger loads the fleet's budget events (bounded: if the store does
// not answer, the follow keeps trying while orders proceed on what this
// node counts) and follows them until ctx ends.
func (m *Manager) followLedger(ctx context.Context) *store.Follower {
	opts := store.FollowOptions{What: "CA budget records", Logger: m.log, Stream: true}
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	rev, err := store.Load(lctx, m.st, ledgerPrefix, opts, m.led)
	cancel()
	if err == nil {
		opts.Loaded, opts.FromRev = true, rev
	} else if ctx.Err() == nil {
		m.log.Warn("loading the CA budget records failed; following them in the background", "err", err)
	}
	return store.Follow(ctx, m.st, ledgerPrefix, opts, m.led)
}
