package certs

// The write path: planning an installation (replacements, chains, limits)
// and carrying it out in store transactions, one bundle (Add) or many
// (AddBatch); removal and the sweep of unused chains.

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"gatehouse/internal/capacity"
	"gatehouse/internal/store"
)

// plan is the store transaction that installs one bundle.
type plan struct {
	b        *Bundle
	rec      *record
	existing *record // the bundle is already installed (Add is a no-op)
	conds    []store.Cond
	ops      []store.Op
	changes  []nameChange
	// touched are the bundles whose records the plan rewrites or deletes;
	// dropped those it deletes (they leave the decoded cache).
	touched  []string
	dropped  []string
	chains   []string // chain keys the plan puts
	warnings []string
}

// plan reads what the store holds for b's names and builds the transaction
// that installs b, replacing bundles of the same key family on those names.
func (m *Manager) plan(ctx context.Context, b *Bundle, now time.Time) (*plan, error) {
	p := &plan{b: b}
	kv, err := m.st.Get(ctx, bundleKey(b.ID))
	switch {
	case err == nil:
		rec, derr := decodeRecord(kv.Value)
		if derr != nil {
			return nil, fmt.Errorf("reading installed bundle %s: %w", b.ID, derr)
		}
		p.existing = rec
		return p, nil
	case !errors.Is(err, store.ErrNotFound):
		return nil, fmt.Errorf("reading bundle %s: %w", b.ID, err)
	}

	rec := &record{
		Leaf:      b.Leaf.Raw,
		KeyType:   b.KeyType,
		Names:     b.Names,
		NotBefore: b.NotBefore,
		NotAfter:  b.NotAfter,
		AddedAt:   now,
	}
	for _, c := range b.Chain {
		sum := sha256.Sum256(c.Raw)
		key := chainKeyOf(sum)
		rec.Chain = append(rec.Chain, sum)
		if slices.Contains(p.chains, key) {
			continue
		}
		kv, err := m.st.Get(ctx, key)
		switch {
		case err == nil:
			// Rewrite it so that a concurrent SweepChains, which deletes on
			// the revision it saw, cannot remove it under this bundle.
			p.conds = append(p.conds, store.Cond{Key: key, ModRev: kv.ModRev})
		case errors.Is(err, store.ErrNotFound):
			p.conds = append(p.conds, store.Absent(key))
		default:
			return nil, fmt.Errorf("reading chain certificate %s: %w", key, err)
		}
		p.ops = append(p.ops, store.Put(key, c.Raw))
		p.chains = append(p.chains, key)
	}

	// Bundles of the same key family serving one of b's names lose that name.
	family := keyFamily(b.KeyType)
	lost := make(map[string][]string) // bundle id -> names it loses
	var lostOrder []string
	for _, name := range b.Names {
		kvs, _, err := m.st.List(ctx, namePrefix(name), "", 0)
		if err != nil {
			return nil, fmt.Errorf("reading bundles for %q: %w", name, err)
		}
		for _, kv := range kvs {
			_, id, ok := parseNameKey(kv.Key)
			if !ok || id == b.ID {
				continue
			}
			ne, err := decodeNameEntry(kv.Value)
			if err != nil || keyFamily(ne.KeyType) != family {
				continue
			}
			if _, seen := lost[id]; !seen {
				lostOrder = append(lostOrder, id)
			}
			lost[id] = append(lost[id], name)
			if ne.NotAfter.After(b.NotAfter) {
				p.warnings = append(p.warnings, fmt.Sprintf("replaces certificate %s for %q, which expires later (%s)", id, name, ne.NotAfter.UTC().Format(time.RFC3339)))
			}
		}
	}
	for _, id := range lostOrder {
		names := lost[id]
		for _, n := range names {
			p.ops = append(p.ops, store.Delete(nameKey(n, id)))
			p.changes = append(p.changes, nameChange{host: n, e: entry{id: id}})
		}
		p.touched = append(p.touched, id)
		kv, err := m.st.Get(ctx, bundleKey(id))
		if errors.Is(err, store.ErrNotFound) {
			continue // index entries without a bundle: just remove them
		}
		if err != nil {
			return nil, fmt.Errorf("reading replaced bundle %s: %w", id, err)
		}
		old, err := decodeRecord(kv.Value)
		if err != nil {
			return nil, fmt.Errorf("reading replaced bundle %s: %w", id, err)
		}
		p.conds = append(p.conds, store.Cond{Key: bundleKey(id), ModRev: kv.ModRev})
		old.Names = slices.DeleteFunc(old.Names, func(n string) bool { return slices.Contains(names, n) })
		if len(old.Names) == 0 {
			p.ops = append(p.ops, store.Delete(bundleKey(id)))
			p.dropped = append(p.dropped, id)
		} else {
			p.ops = append(p.ops, store.Put(bundleKey(id), old.encode()))
		}
	}

	pkcs8, err := x509.MarshalPKCS8PrivateKey(b.Key)
	if err != nil {
		return nil, &InputError{Part: "private key", Problem: fmt.Sprintf("cannot encode: %v", err), Err: err}
	}
	rec.SealedKey = m.kek.seal(b.ID, pkcs8)
	clear(pkcs8)
	p.rec = rec
	p.conds = append(p.conds, store.Absent(bundleKey(b.ID)))
	p.ops = append(p.ops, store.Put(bundleKey(b.ID), rec.encode()))
	ne := nameEntry{KeyType: b.KeyType, NotAfter: b.NotAfter}
	val := ne.encode()
	for _, n := range b.Names {
		p.ops = append(p.ops, store.Put(nameKey(n, b.ID), val))
		p.changes = append(p.changes, nameChange{put: true, host: n, e: entry{id: b.ID, keyType: b.KeyType, notAfter: b.NotAfter}})
	}
	return p, nil
}

// Add validates and installs a bundle (see ParseBundle for the inputs) and
// returns its Info and any warnings. For each name of the new bundle, a
// bundle of the same key family (ECDSA, RSA, Ed25519) that serves that name
// stops serving it, in the same transaction; a bundle left with no names is
// deleted. Adding a leaf that is already installed changes nothing and
// returns the installed bundle's Info without error. Once Add returns, the
// next handshake on this process sees the change. Invalid input is an
// *InputError; crossing the certificate limit or the store quota is a
// *capacity.LimitError.
func (m *Manager) Add(ctx context.Context, certPEM, keyPEM []byte) (Info, []string, error) {
	now := m.now()
	b, err := ParseBundle(certPEM, keyPEM)
	if err != nil {
		return Info{}, nil, err
	}
	warnings, err := Validate(b, now, ValidateOptions{ExpiryWarning: m.opts.ExpiryWarning})
	if err != nil {
		return Info{}, nil, err
	}
	if err := m.waitLoaded(ctx); err != nil {
		return Info{}, nil, err
	}
	m.writeMu.Lock()
	defer m.writeMu.Unlock()
	// A store that cannot tell its size now (etcd's status not yet
	// answered after an outage) is not judged for one bundle: the write
	// goes on, and fails on its own if the store is down or full.
	if err := m.admitStore(ctx, []*Bundle{b}); err != nil && !errors.Is(err, store.ErrUnavailable) { // quota.go
		return Info{}, nil, err
	}
	info, more, err := m.addLocked(ctx, b, now)
	return info, append(warnings, more...), err
}

// addLocked installs b in one transaction that also moves the bundle
// counter, admitted against the counter's value in that transaction.
func (m *Manager) addLocked(ctx context.Context, b *Bundle, now time.Time) (Info, []string, error) {
	for range maxAttempts {
		p, err := m.plan(ctx, b, now)
		if err != nil {
			return Info{}, nil, err
		}
		if p.existing != nil {
			return m.info(b.ID, p.existing), nil, nil
		}
		cnt, err := m.readCounter(ctx)
		if err != nil {
			return Info{}, nil, err
		}
		after := cnt.Value + 1 - int64(len(p.dropped))
		// Admitted by what it adds net: a renewal that replaces a bundle
		// does not grow the count and passes even above a lowered limit.
		if err := m.opts.Admission.Admit(ctx, capacity.Certificates, cnt.Value, 1-int64(len(p.dropped))); err != nil {
			return Info{}, nil, err
		}
		rev, err := m.st.Txn(ctx, append(p.conds, cnt.Cond), append(p.ops, cnt.Op(after)))
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return Info{}, nil, fmt.Errorf("installing bundle %s: %w", b.ID, err)
		}
		// A re-added leaf may come with another chain: drop its old decoding too.
		m.applyLocal(rev, p.changes, append(p.dropped, b.ID))
		m.opts.Admission.Record(capacity.Certificates, after)
		m.opts.Admission.Record(capacity.Store, -1)
		m.log.Info("certificate added", "id", b.ID, "names", b.Names, "key_type", b.KeyType, "replaced", p.touched)
		return m.info(b.ID, p.rec), p.warnings, nil
	}
	return Info{}, nil, fmt.Errorf("installing bundle %s: gave up after %d conflicting concurrent changes: %w", b.ID, maxAttempts, store.ErrConflict)
}

// Remove deletes bundle id and its index entries. Once it returns, this
// process no longer serves it. An unknown id is an error wrapping
// store.ErrNotFound.
func (m *Manager) Remove(ctx context.Context, id string) error {
	if !isBundleID(id) {
		return fmt.Errorf("certificate %q: %w", id, store.ErrNotFound)
	}
	m.writeMu.Lock()
	defer m.writeMu.Unlock()
	for range maxAttempts {
		kv, err := m.st.Get(ctx, bundleKey(id))
		if err != nil {
			return fmt.Errorf("certificate %q: %w", id, err)
		}
		cnt, err := m.readCounter(ctx)
		if err != nil {
			return err
		}
		after := max(cnt.Value-1, 0)
		ops := []store.Op{store.Delete(bundleKey(id)), cnt.Op(after)}
		var changes []nameChange
		rec, err := decodeRecord(kv.Value)
		if err != nil {
			m.log.Warn("removing corrupt bundle record", "id", id, "err", err)
		} else {
			for _, n := range rec.Names {
				ops = append(ops, store.Delete(nameKey(n, id)))
				changes = append(changes, nameChange{host: n, e: entry{id: id}})
			}
		}
		rev, err := m.st.Txn(ctx, []store.Cond{{Key: bundleKey(id), ModRev: kv.ModRev}, cnt.Cond}, ops)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return fmt.Errorf("removing certificate %q: %w", id, err)
		}
		m.applyLocal(rev, changes, []string{id})
		m.opts.Admission.Record(capacity.Certificates, after)
		m.log.Info("certificate removed", "id", id)
		return nil
	}
	return fmt.Errorf("removing certificate %q: gave up after %d conflicting concurrent changes: %w", id, maxAttempts, store.ErrConflict)
}

// Item is one bundle to import: its PEM inputs (see ParseBundle) and where
// they came from, for reporting.
type Item struct {
	Source  string
	CertPEM []byte
	KeyPEM  []byte
}

// Result is the outcome of one Item of AddBatch.
type Result struct {
	Source   string
	Info     Info     // set when Err is nil
	Warnings []string // set when Err is nil
	Err      error
}

// AddBatch installs many bundles, each validated on its own and with the
// semantics of Add, writing them in transactions of at most 64 operations
// (one bundle is never split across transactions). Admission covers the
// whole batch up front: if installing every valid new bundle would cross
// the certificate limit or the store quota, nothing is written and every
// valid item reports the *capacity.LimitError. Each transaction moves the
// bundle counter too and is admitted against it again, so that writers on
// other nodes meanwhile cannot take the fleet past the limit (an item
// refused then reports the error). Results are in the order of items.
func (m *Manager) AddBatch(ctx context.Context, items []Item) []Result {
	now := m.now()
	results, bundles, dupOf := m.parseItems(items, now)
	if err := m.waitLoaded(ctx); err != nil {
		failRest(results, err, false)
		return results
	}
	m.writeMu.Lock()
	defer m.writeMu.Unlock()
	err := m.admitBatch(ctx, bundles)
	if err == nil {
		err = m.admitStore(ctx, bundles) // quota.go
	}
	if err != nil {
		failRest(results, err, true)
		return results
	}

	g := newTxnGroup()
	flush := func() {
		if len(g.plans) > 0 {
			m.flush(ctx, g.plans, g.idx, results, now)
			g.reset()
		}
	}
	for i, b := range bundles {
		if b == nil {
			continue
		}
		p, err := m.plan(ctx, b, now)
		if err == nil && p.existing == nil && len(g.plans) > 0 && g.conflicts(p) {
			// Plan again once the store reflects the group.
			flush()
			p, err = m.plan(ctx, b, now)
		}
		switch {
		case err != nil:
			results[i].Err = err
			continue
		case p.existing != nil:
			results[i].Info = m.info(b.ID, p.existing)
			continue
		}
		g.add(p, i)
	}
	flush()
	for i, j := range dupOf {
		if j >= 0 {
			results[i].Info, results[i].Err = results[j].Info, results[j].Err
		}
	}
	return results
}

// parseItems parses and validates every item: results holds each item's
// source and any error, bundles the bundles to install (nil for an item
// that failed or repeats an earlier one), dupOf[i] the earlier item that
// item i repeats (-1 for none).
func (m *Manager) parseItems(items []Item, now time.Time) (results []Result, bundles []*Bundle, dupOf []int) {
	results = make([]Result, len(items))
	bundles = make([]*Bundle, len(items))
	dupOf = make([]int, len(items))
	firstOf := make(map[string]int) // bundle id -> first item with it
	for i, it := range items {
		results[i].Source = it.Source
		dupOf[i] = -1
		b, err := ParseBundle(it.CertPEM, it.KeyPEM)
		if err == nil {
			results[i].Warnings, err = Validate(b, now, ValidateOptions{ExpiryWarning: m.opts.ExpiryWarning})
		}
		if err != nil {
			results[i].Err = err
			continue
		}
		if j, ok := firstOf[b.ID]; ok {
			dupOf[i] = j
			continue
		}
		firstOf[b.ID] = i
		bundles[i] = b
	}
	return results, bundles, dupOf
}

// failRest sets err on every result that has none (dropping its
// warnings with dropWarnings).
func failRest(results []Result, err error, dropWarnings bool) {
	for i := range results {
		if results[i].Err == nil {
			results[i].Err = err
			if dropWarnings {
				results[i].Warnings = nil
			}
		}
	}
}

// txnGroup is the plans AddBatch writes in one transaction: no two of
// them install a name of the same key family or touch the same bundle,
// and together they stay within maxTxnOps.
type txnGroup struct {
	plans   []*plan
	idx     []int // the item of each plan
	ops     int
	names   map[string]bool // family + "/" + name
	touched map[string]bool
}

func newTxnGroup() *txnGroup {
	return &txnGroup{names: make(map[string]bool), touched: make(map[string]bool)}
}

func (g *txnGroup) reset() {
	g.plans, g.idx, g.ops = nil, nil, 0
	clear(g.names)
	clear(g.touched)
}

// conflicts reports whether p must wait for the group to be written.
func (g *txnGroup) conflicts(p *plan) bool {
	if g.ops+len(p.ops) > maxTxnOps {
		return true
	}
	fam := keyFamily(p.b.KeyType)
	for _, n := range p.b.Names {
		if g.names[fam+"/"+n] {
			return true
		}
	}
	for _, id := range p.touched {
		if g.touched[id] {
			return true
		}
	}
	return false
}

// add puts p, the plan of item i, in the group; chains that the group
// already writes need no second put.
func (g *txnGroup) add(p *plan, i int) {
	p.conds, p.ops = dropChainOps(p, g.plans)
	g.plans = append(g.plans, p)
	g.idx = append(g.idx, i)
	g.ops += len(p.ops)
	fam := keyFamily(p.b.KeyType)
	for _, n := range p.b.Names {
		g.names[fam+"/"+n] = true
	}
	for _, id := range p.touched {
		g.touched[id] = true
	}
}

// dropChainOps removes from p the chain puts and conditions that an earlier
// plan of the group already carries.
func dropChainOps(p *plan, group []*plan) ([]store.Cond, []store.Op) {
	have := func(key string) bool {
		for _, q := range group {
			if slices.Contains(q.chains, key) {
				return true
			}
		}
		return false
	}
	conds := p.conds[:0:0]
	for _, c := range p.conds {
		if !strings.HasPrefix(c.Key, prefixChains) || !have(c.Key) {
			conds = append(conds, c)
		}
	}
	ops := p.ops[:0:0]
	for _, o := range p.ops {
		if !strings.HasPrefix(o.Key, prefixChains) || !have(o.Key) {
			ops = append(ops, o)
		}
	}
	return conds, ops
}

// flush writes a group of plans in one transaction with the bundle
// counter, admitted against it. If another writer moved only the counter,
// the group is admitted and written again; if it changed what the plans
// read, each bundle is installed on its own instead.
func (m *Manager) flush(ctx context.Context, group []*plan, idx []int, results []Result, now time.Time) {
	var conds []store.Cond
	var ops []store.Op
	var dropped int64
	for _, p := range group {
		conds = append(conds, p.conds...)
		ops = append(ops, p.ops...)
		dropped += int64(len(p.dropped))
	}
	adding := int64(len(group))
	var rev, after int64
	cnt, err := m.readCounter(ctx)
	for attempt := 1; err == nil; attempt++ {
		if err = m.opts.Admission.Admit(ctx, capacity.Certificates, cnt.Value, adding-dropped); err != nil {
			break
		}
		after = cnt.Value + adding - dropped
		rev, err = m.st.Txn(ctx, append(conds, cnt.Cond), append(ops, cnt.Op(after)))
		if !errors.Is(err, store.ErrConflict) || attempt == maxAttempts {
			break
		}
		// Another writer of the fleet moved the counter: admit the group
		// again against it. If the counter did not move, a bundle or name
		// changed, and the group is planned again item by item below.
		cur, rerr := m.readCounter(ctx)
		if rerr != nil || cur.Cond == cnt.Cond {
			break
		}
		cnt = cur
	}
	if err == nil {
		for k, p := range group {
			m.applyLocal(rev, p.changes, append(p.dropped, p.b.ID))
			r := &results[idx[k]]
			r.Info = m.info(p.b.ID, p.rec)
			r.Warnings = append(r.Warnings, p.warnings...)
		}
		m.opts.Admission.Record(capacity.Certificates, after)
		m.opts.Admission.Record(capacity.Store, -1)
		m.log.Info("certificates imported", "count", len(group), "rev", rev)
		return
	}
	for k, p := range group {
		r := &results[idx[k]]
		if !errors.Is(err, store.ErrConflict) {
			r.Err = fmt.Errorf("installing bundle %s: %w", p.b.ID, err)
			r.Warnings = nil
			continue
		}
		info, more, err := m.addLocked(ctx, p.b, now)
		r.Info, r.Err = info, err
		r.Warnings = append(r.Warnings, more...)
	}
}

// estimateBatch returns how many bundles a batch would add and how many it
// would replace entirely, judged from the local index.
func (m *Manager) estimateBatch(bundles []*Bundle) (adding, removing int64) {
	left := make(map[string]int) // replaced bundle id -> names it still serves
	inBatch := make(map[string]bool)
	for _, b := range bundles {
		if b != nil {
			inBatch[b.ID] = true
		}
	}
	for _, b := range bundles {
		if b == nil || m.idx.has(b.ID) {
			continue
		}
		adding++
		fam := keyFamily(b.KeyType)
		for _, n := range b.Names {
			for _, e := range m.idx.lookup(n) {
				if e.id == b.ID || inBatch[e.id] || keyFamily(e.keyType) != fam {
					continue
				}
				c, ok := left[e.id]
				if !ok {
					c = m.idx.nameCount(e.id)
				}
				if c--; c == 0 {
					removing++
				}
				left[e.id] = c
			}
		}
	}
	return adding, removing
}

// SweepChains deletes stored intermediates that no bundle references and
// returns how many it deleted. It is safe to run while bundles are added
// anywhere: a chain entry that an addition reuses is rewritten by it, so the
// sweep's conditional delete of that entry fails and the entry stays.
func (m *Manager) SweepChains(ctx context.Context) (int, error) {
	chains := make(map[string]int64) // key -> mod revision
	for kv, err := range store.All(ctx, m.st, prefixChains, listPageSize) {
		if err != nil {
			return 0, fmt.Errorf("listing chain certificates: %w", err)
		}
		chains[kv.Key] = kv.ModRev
	}
	if len(chains) == 0 {
		return 0, nil
	}
	for kv, err := range store.All(ctx, m.st, prefixBundles, 1000) {
		if err != nil {
			return 0, fmt.Errorf("listing certificates: %w", err)
		}
		rec, err := decodeRecord(kv.Value)
		if err != nil {
			return 0, fmt.Errorf("sweeping chains: bundle %s: %w", idFromBundleKey(kv.Key), err)
		}
		for _, h := range rec.Chain {
			delete(chains, chainKeyOf(h))
		}
	}
	deleted := 0
	for key, rev := range chains {
		_, err := m.st.Txn(ctx, []store.Cond{{Key: key, ModRev: rev}}, []store.Op{store.Delete(key)})
		switch {
		case err == nil:
			deleted++
		case errors.Is(err, store.ErrConflict):
		default:
			return deleted, fmt.Errorf("deleting chain certificate %s: %w", key, err)
		}
	}
	return deleted, nil
}
