package certs

import (
	"context"

	"gatehouse/internal/capacity"
	"gatehouse/internal/store"
)

// counterKey holds the number of bundle records under prefixBundles,
// changed in the same transaction as every write that adds or deletes one.
const counterKey = store.CounterPrefix + "certificates"

// Admission decides whether a change fits the limits in force and hears of
// the usage after it (*capacity.Registry).
type Admission interface {
	// Admit returns an error (a *capacity.LimitError) if adding n to
	// usage of resource would cross its limit.
	Admit(ctx context.Context, resource string, usage, n int64) error
	// Record notes the usage of resource after a committed change (-1:
	// read it anew).
	Record(resource string, usage int64)
}

// ownAdmission is the registry of a manager given no Admission: the
// certificate limit of Options.MaxCertificates and the store's own quota.
func (m *Manager) ownAdmission() *capacity.Registry {
	r := capacity.New(capacity.Options{Logger: m.log, Settings: capacity.Settings{
		Limits: map[string]int64{capacity.Certificates: m.opts.MaxCertificates},
	}})
	r.Register(capacity.Certificates, "count", "limits.max_certificates", true, func() (int64, int64) { return m.Count(), 0 })
	r.Register(capacity.Store, "bytes", "limits.store_quota", true, func() (int64, int64) {
		u, err := m.storeUsage(context.Background())
		if err != nil {
			return -1, 0
		}
		return u.Bytes, u.QuotaBytes
	})
	return r
}

// readCounter reads the bundle counter, counting the bundles of a store
// that has none yet.
func (m *Manager) readCounter(ctx context.Context) (store.Counted, error) {
	return store.ReadCounter(ctx, m.st, counterKey, prefixBundles)
}

// admitBatch admits the bundles a batch would add, less those it would
// replace entirely, against the bundle counter: a batch that does not grow
// the count (renewals) is admitted even above a lowered limit.
func (m *Manager) admitBatch(ctx context.Context, bundles []*Bundle) error {
	adding, removing := m.estimateBatch(bundles)
	if adding-removing <= 0 {
		return nil
	}
	cnt, err := m.readCounter(ctx)
	if err != nil {
		return err
	}
	return m.opts.Admission.Admit(ctx, capacity.Certificates, cnt.Value, adding-removing)
}

// SetCacheBytes changes the bound of the decoded-certificate cache (0:
// DefaultCacheBytes), evicting entries to meet a lower one.
func (m *Manager) SetCacheBytes(n int64) {
	if n <= 0 {
		n = DefaultCacheBytes
	}
	m.cache.setLimit(n)
}
