package certs

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"

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

// QuotaError refuses a batch whose estimated size does not fit in what is
// left of the store's quota. It wraps store.ErrTooLarge.
type QuotaError struct {
	Bundles     int   // new bundles in the batch
	AddingBytes int64 // their estimated size in the store
	UsedBytes   int64 // the store's size now
	QuotaBytes  int64 // the store's quota
}

// Error gives the numbers and what to do.
func (e *QuotaError) Error() string {
	free := max(e.QuotaBytes-e.UsedBytes, 0)
	return fmt.Sprintf("store quota: %d new certificates need about %s but the store uses %s of its %s quota (%s free), so the import would exceed it by about %s; raise the quota (etcd: --quota-backend-bytes; embedded store: limits.store_quota), compact and defragment etcd, or import fewer",
		e.Bundles, mib(e.AddingBytes), mib(e.UsedBytes), mib(e.QuotaBytes), mib(free), mib(e.UsedBytes+e.AddingBytes-e.QuotaBytes))
}

// Unwrap returns store.ErrTooLarge.
func (e *QuotaError) Unwrap() error { return store.ErrTooLarge }

func mib(b int64) string {
	if b < 1<<20 {
		return fmt.Sprintf("%.1f KiB", float64(b)/(1<<10))
	}
	return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
}

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

// checkQuota refuses a batch of bundles whose estimated size would cross
// the store's quota, when the store reports one. Bundles already installed
// (by ID, in the local index) cost nothing. A store that cannot report its
// usage is not judged here: its writes fail on their own if it is full.
func (m *Manager) checkQuota(ctx context.Context, bundles []*Bundle) error {
	sz, ok := m.st.(store.Sizer)
	if !ok {
		return nil
	}
	seen := make(map[[32]byte]bool)
	var adding int64
	n := 0
	for _, b := range bundles {
		if b == nil || m.idx.has(b.ID) {
			continue
		}
		adding += estimateStoreBytes(b, seen)
		n++
	}
	if n == 0 {
		return nil
	}
	u, err := sz.Usage(ctx)
	if err != nil {
		if errors.Is(err, store.ErrUnavailable) {
			return fmt.Errorf("checking the store quota: %w", err)
		}
		return nil
	}
	if u.QuotaBytes <= 0 || u.Bytes+adding <= u.QuotaBytes {
		return nil
	}
	return &QuotaError{Bundles: n, AddingBytes: adding, UsedBytes: u.Bytes, QuotaBytes: u.QuotaBytes}
}
