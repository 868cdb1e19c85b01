package certs

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"

	"gatehouse/internal/capacity"
	"gatehouse/internal/store"
)

// Estimating what a bundle costs a store on disk. etcd keeps about 6.2 KB
// on disk per 4 KB value (its key index, the revision key of each entry and
// the B+tree's page slack); bbolt costs less. The estimate is etcd's and
// errs high, so that a batch refused here would have failed part way there:
// bench/fleet measured 1,031 bytes per ECDSA bundle of one name on etcd 3.7
// at 100,000 (history included), where this estimates about 1,370.
const (
	// storeBytesFactor scales the bytes of keys and values to disk bytes.
	storeBytesFactor = 1.5
	// storeKeyOverhead is the fixed cost of each stored key (revision key,
	// index entry, bbolt element header).
	storeKeyOverhead = 64
	// sealedKeyOverhead is the nonce and tag around a sealed private key.
	sealedKeyOverhead = 28
	// recordOverhead covers a bundle record's fields besides leaf and key.
	recordOverhead = 96
	// nameValueBytes is the size of one hostname index value.
	nameValueBytes = 24
)

// quotaHint is what a refusal of store bytes tells the operator to do.
const quotaHint = "raise limits.store_quota (on etcd, also --quota-backend-bytes if it is the lower), compact and defragment etcd, or import fewer"

// estimateStoreBytes estimates what installing b costs the store on disk,
// counting its chain certificates unless seen already has their hash
// (which it then records).
func estimateStoreBytes(b *Bundle, seen map[[32]byte]bool) int64 {
	keyBytes := 200 // a PKCS#8 key: about 140 bytes for P-256, 185 for P-384, 1.2 KB for RSA-2048
	if k, ok := b.Leaf.PublicKey.(interface{ Size() int }); ok && keyFamily(b.KeyType) == "rsa" {
		keyBytes = 1220 * max(k.Size(), 256) / 256
	}
	raw := int64(len(bundleKey(b.ID)) + len(b.Leaf.Raw) + keyBytes + sealedKeyOverhead + recordOverhead)
	keys := int64(1)
	for _, n := range b.Names {
		raw += int64(len(n) + len(nameKey(n, b.ID)) + nameValueBytes)
		keys++
	}
	for _, c := range b.Chain {
		sum := sha256.Sum256(c.Raw)
		if seen[sum] {
			continue
		}
		seen[sum] = true
		raw += int64(len(chainKeyOf(sum)) + len(c.Raw))
		keys++
	}
	return int64(float64(raw)*storeBytesFactor) + keys*storeKeyOverhead
}

// storeUsage asks the store for its size, when it can tell.
func (m *Manager) storeUsage(ctx context.Context) (store.Usage, error) {
	sz, ok := m.st.(store.Sizer)
	if !ok {
		return store.Usage{}, errors.ErrUnsupported
	}
	return sz.Usage(ctx)
}

// admitStore refuses bundles whose estimated size would cross the store
// quota in force (the store's own, or limits.store_quota if lower), when
// the store reports its size. Bundles already installed (by ID, in the
// local index) cost nothing. A store that cannot report its usage is not
// judged here: its writes fail on their own if it is full.
func (m *Manager) admitStore(ctx context.Context, bundles []*Bundle) error {
	seen := make(map[[32]byte]bool)
	var adding int64
	for _, b := range bundles {
		if b == nil || m.idx.has(b.ID) {
			continue
		}
		adding += estimateStoreBytes(b, seen)
	}
	if adding == 0 {
		return nil
	}
	u, err := m.storeUsage(ctx)
	if err != nil {
		if errors.Is(err, store.ErrUnavailable) {
			return fmt.Errorf("checking the store quota: %w", err)
		}
		return nil
	}
	err = m.opts.Admission.Admit(ctx, capacity.Store, u.Bytes, adding)
	var le *capacity.LimitError
	if errors.As(err, &le) {
		le.Hint = quotaHint
	}
	return err
}
