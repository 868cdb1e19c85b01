// Package tickets shares TLS session ticket keys across a fleet through the
// store, so that a client that got a session ticket from one node resumes
// its session on any other.
//
// The keys live under one store key (StoreKey), sealed with the fleet's
// key-encryption key. One node at a time (the fleet-once election) rotates
// them every Options.Period, keeping the previous key for decryption, so a
// ticket stays usable for at least one period and at most two. Every node
// watches the key and serves with the newest keys it has seen; until it has
// seen any (the store was unreachable at start), crypto/tls's own
// per-process keys apply and clients resume only on the node that issued
// their ticket.
package tickets

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"gatehouse/internal/loop"
	"gatehouse/internal/store"
)

// StoreKey is where the sealed ticket keys live in the store.
const StoreKey = "tls/session-tickets"

// DefaultPeriod is how often the keys rotate when Options.Period is zero.
const DefaultPeriod = 12 * time.Hour

// keepPrevious is how many keys older than the current one are kept for
// decrypting tickets issued before the last rotation.
const keepPrevious = 1

// errUnreadable marks stored keys this node cannot open or decode.
var errUnreadable = errors.New("cannot be read")

// sealLabel binds sealed key sets to their purpose (see certs.KEK.Seal).
const sealLabel = StoreKey

// Sealer encrypts and decrypts values at rest; *certs.KEK is one.
type Sealer interface {
	Seal(label string, plaintext []byte) []byte
	Open(label string, sealed []byte) ([]byte, error)
}

// Options configure New. The zero value is usable.
type Options struct {
	// Logger receives operational messages (never key material); nil
	// discards them.
	Logger *slog.Logger
	// Period is how long a key encrypts new tickets before the next
	// rotation (0: DefaultPeriod).
	Period time.Duration
	// Now returns the current time (nil: time.Now). It decides when a
	// rotation is due.
	Now func() time.Time
	// StartTimeout bounds how long Start waits for the store (0:
	// DefaultStartTimeout). A node whose store does not answer in time
	// starts with its own keys and adopts the fleet's when the store does.
	StartTimeout time.Duration
}

// DefaultStartTimeout is how long Start waits for the store when
// Options.StartTimeout is zero: short, because serving matters more than
// resumption across nodes.
const DefaultStartTimeout = 2 * time.Second

// Keys keeps the fleet's session ticket keys: it follows the store's copy
// and hands it to the TLS configs built by TLSConfig. It is safe for
// concurrent use.
type Keys struct {
	st     store.Store
	sealer Sealer
	log    *slog.Logger
	period time.Duration
	now    func() time.Time
	start  time.Duration

	// mu guards set and configs.
	mu      sync.Mutex
	set     keySet
	configs []*derived

	runMu    sync.Mutex // guards follower
	follower *store.Follower
}

// derived is one TLS config built by TLSConfig: its base, and the copy of
// the base that carries the current keys.
type derived struct {
	base *tls.Config
	cur  atomic.Pointer[tls.Config]
}

// keySet is what StoreKey holds once opened: the keys, newest first.
type keySet struct {
	Keys []ticketKey `json:"keys"`
}

type ticketKey struct {
	Created time.Time `json:"created"`
	Key     []byte    `json:"key"` // 32 bytes
}

// New returns the Keys of the fleet sharing st, sealed with sealer. Call
// Start to load and follow them, and Close to stop.
func New(st store.Store, sealer Sealer, opts Options) *Keys {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.Period <= 0 {
		opts.Period = DefaultPeriod
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = DefaultStartTimeout
	}
	return &Keys{
		st:     st,
		sealer: sealer,
		log:    opts.Logger.With("component", "tickets"),
		period: opts.Period,
		now:    opts.Now,
		start:  opts.StartTimeout,
	}
}

// TLSConfig returns a copy of base whose handshakes encrypt and decrypt
// session tickets with the fleet's keys, through a GetConfigForClient that
// returns base with those keys set (so it survives the copies that
// net/http makes of a server's config). If base has a GetConfigForClient,
// a config it returns is used as is, with per-process keys. Until the fleet
// keys are known, base's own keys apply.
func (k *Keys) TLSConfig(base *tls.Config) *tls.Config {
	d := &derived{base: base.Clone()}
	k.mu.Lock()
	k.configs = append(k.configs, d)
	if len(k.set.Keys) > 0 {
		d.cur.Store(d.with(k.set))
	}
	k.mu.Unlock()
	outer := base.Clone()
	inner := base.GetConfigForClient
	outer.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		if inner != nil {
			if c, err := inner(hello); c != nil || err != nil {
				return c, err
			}
		}
		return d.cur.Load(), nil
	}
	return outer
}

// with returns a copy of the base config using the keys of set.
func (d *derived) with(set keySet) *tls.Config {
	c := d.base.Clone()
	c.GetConfigForClient = nil
	keys := make([][32]byte, len(set.Keys))
	for i, tk := range set.Keys {
		copy(keys[i][:], tk.Key)
	}
	c.SetSessionTicketKeys(keys)
	return c
}

// Start makes sure the store holds keys (creating the first ones if it
// holds none), applies them, and follows changes until Close. A store that
// cannot be reached within Options.StartTimeout does not fail Start: the
// keys are applied once it answers. Keys that cannot be opened (another
// key-encryption key) do.
func (k *Keys) Start(ctx context.Context) error {
	k.runMu.Lock()
	defer k.runMu.Unlock()
	if k.follower != nil {
		return errors.New("tickets: already started")
	}
	opts := store.FollowOptions{What: "session ticket keys", Logger: k.log}
	sctx, scancel := context.WithTimeout(ctx, k.start)
	rev, err := store.Load(sctx, k.st, StoreKey, opts, (*feed)(k))
	scancel()
	switch {
	case err == nil:
		opts.Loaded, opts.FromRev = true, rev
	case errors.Is(err, errUnreadable):
		return err
	default:
		k.log.Warn("session tickets use this node's own keys until the store's can be read", "err", err)
	}
	k.follower = store.Follow(context.WithoutCancel(ctx), k.st, StoreKey, opts, (*feed)(k))
	return nil
}

// Close stops following the store. It does not close the store.
func (k *Keys) Close() error {
	k.runMu.Lock()
	defer k.runMu.Unlock()
	k.follower.Stop()
	return nil
}

// Rotate replaces the current key with a new one if it is at least
// Options.Period old (or creates the first key), keeping the previous one
// for decryption, and reports whether it wrote. Another node rotating at
// the same moment makes it a no-op. Run it on one node of the fleet at a
// time (see RunRotation).
func (k *Keys) Rotate(ctx context.Context) (bool, error) {
	rotated, _, err := k.rotate(ctx, false)
	return rotated, err
}

// RunRotation rotates the keys whenever they are due until ctx is done.
func (k *Keys) RunRotation(ctx context.Context) {
	for {
		wait := time.Minute
		_, created, err := k.rotate(ctx, false)
		switch {
		case err != nil && ctx.Err() == nil:
			k.log.Warn("rotating session ticket keys", "err", err, "retry_in", wait)
		case err == nil:
			wait = max(created.Add(k.period).Sub(k.now()), time.Second)
		}
		if !loop.Sleep(ctx, wait) {
			return
		}
	}
}

// rotate writes a new key when due (or, with onlyIfAbsent, only when the
// store holds none), applies what the store holds, and returns whether it
// wrote and when the current key was created.
func (k *Keys) rotate(ctx context.Context, onlyIfAbsent bool) (bool, time.Time, error) {
	var (
		set  keySet
		cond store.Cond
	)
	kv, err := k.st.Get(ctx, StoreKey)
	switch {
	case errors.Is(err, store.ErrNotFound):
		cond = store.Absent(StoreKey)
	case err != nil:
		return false, time.Time{}, fmt.Errorf("reading session ticket keys: %w", err)
	default:
		if set, err = k.open(kv.Value); err != nil {
			return false, time.Time{}, err
		}
		cond = store.Cond{Key: StoreKey, ModRev: kv.ModRev}
		k.apply(set)
		if onlyIfAbsent || k.now().Sub(set.Keys[0].Created) < k.period {
			return false, set.Keys[0].Created, nil
		}
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return false, time.Time{}, fmt.Errorf("generating a session ticket key: %w", err)
	}
	next := keySet{Keys: append([]ticketKey{{Created: k.now().UTC(), Key: key}}, set.Keys[:min(len(set.Keys), keepPrevious)]...)}
	plain, err := json.Marshal(next)
	if err != nil {
		return false, time.Time{}, fmt.Errorf("encoding session ticket keys: %w", err)
	}
	sealed := k.sealer.Seal(sealLabel, plain)
	clear(plain)
	if _, err := k.st.Txn(ctx, []store.Cond{cond}, []store.Op{store.Put(StoreKey, sealed)}); err != nil {
		if errors.Is(err, store.ErrConflict) {
			// Another node wrote first; the watch brings its keys.
			return false, k.newest(), nil
		}
		return false, time.Time{}, fmt.Errorf("writing session ticket keys: %w", err)
	}
	k.apply(next)
	k.log.Info("session ticket keys rotated", "created", next.Keys[0].Created, "keys", len(next.Keys))
	return true, next.Keys[0].Created, nil
}

// open decrypts and decodes a stored key set.
func (k *Keys) open(sealed []byte) (keySet, error) {
	plain, err := k.sealer.Open(sealLabel, sealed)
	if err != nil {
		return keySet{}, fmt.Errorf("session ticket keys in the store (%s) %w: %w", StoreKey, errUnreadable, err)
	}
	defer clear(plain)
	var set keySet
	if err := json.Unmarshal(plain, &set); err != nil {
		return keySet{}, fmt.Errorf("session ticket keys in the store (%s) %w: %w", StoreKey, errUnreadable, err)
	}
	if len(set.Keys) == 0 {
		return keySet{}, fmt.Errorf("session ticket keys in the store (%s) %w: it holds no keys", StoreKey, errUnreadable)
	}
	for i, tk := range set.Keys {
		if len(tk.Key) != 32 {
			return keySet{}, fmt.Errorf("session ticket keys in the store (%s) %w: key %d is %d bytes, want 32", StoreKey, errUnreadable, i, len(tk.Key))
		}
	}
	return set, nil
}

// apply hands set to every config unless it is what they already have.
func (k *Keys) apply(set keySet) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if sameKeys(k.set, set) {
		return
	}
	k.set = set
	for _, d := range k.configs {
		d.cur.Store(d.with(set))
	}
	k.log.Debug("session ticket keys applied", "created", set.Keys[0].Created, "keys", len(set.Keys))
}

func sameKeys(a, b keySet) bool {
	if len(a.Keys) != len(b.Keys) {
		return false
	}
	for i := range a.Keys {
		if !a.Keys[i].Created.Equal(b.Keys[i].Created) || string(a.Keys[i].Key) != string(b.Keys[i].Key) {
			return false
		}
	}
	return true
}

// newest returns when the applied current key was created.
func (k *Keys) newest() time.Time {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.set.Keys) == 0 {
		return time.Time{}
	}
	return k.set.Keys[0].Created
}

// Current returns when the key that encrypts new tickets was created and
// how many keys decrypt them; zero values before any key is known.
func (k *Keys) Current() (created time.Time, keys int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.set.Keys) == 0 {
		return time.Time{}, 0
	}
	return k.set.Keys[0].Created, len(k.set.Keys)
}

// feed is Keys as the store.Handler that follows StoreKey (see
// store.Follow).
type feed Keys

// Reset makes sure the store holds keys (creating the first ones if it
// holds none) and applies them. The listing only fixes the revision to
// watch from: what rotate reads is at least as new.
func (f *feed) Reset(ctx context.Context, l *store.Listing) error {
	for _, err := range l.All() {
		if err != nil {
			return err
		}
	}
	_, _, err := (*Keys)(f).rotate(ctx, true)
	return err
}

// Apply applies the key sets that other nodes (or this one) wrote.
func (f *feed) Apply(resps []store.WatchResponse) {
	k := (*Keys)(f)
	for _, resp := range resps {
		for _, ev := range resp.Events {
			if ev.KV.Key != StoreKey || ev.Type != store.EventPut {
				continue
			}
			set, err := k.open(ev.KV.Value)
			if err != nil {
				k.log.Error("ignoring session ticket keys that cannot be opened", "err", err)
				continue
			}
			k.apply(set)
		}
	}
}
