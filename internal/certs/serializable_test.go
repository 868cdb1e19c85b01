package certs

import (
	"context"
	"crypto/tls"
	"fmt"
	"sync/atomic"
	"testing"

	"gatehouse/internal/store"
)

// replicaStore is a store whose serializable reads come from a second real
// store, a replica that holds only what was copied to it.
type replicaStore struct {
	*countingStore
	replica store.Store
	serial  atomic.Int64
}

func (s *replicaStore) GetSerializable(ctx context.Context, key string) (store.KV, error) {
	s.serial.Add(1)
	return s.replica.Get(ctx, key)
}

// syncReplica copies every key of s into the replica.
func (s *replicaStore) syncReplica(t *testing.T) {
	t.Helper()
	kvs, _, err := s.Store.List(context.Background(), "", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range kvs {
		if _, err := store.PutKV(context.Background(), s.replica, kv.Key, kv.Value); err != nil {
			t.Fatal(err)
		}
	}
}

func TestHandshakeMissReadsSerializable(t *testing.T) {
	p := newPKI(t)
	primary, _ := openStore(t)
	replica, _ := openStore(t)
	rs := &replicaStore{countingStore: &countingStore{Store: primary}, replica: replica}
	writer := startManager(t, rs, Options{})
	lagging := p.leaf(t, leafSpec{names: []string{"lagging.serial.test"}})
	synced := p.leaf(t, leafSpec{names: []string{"synced.serial.test"}})
	mustAdd(t, writer, synced)
	rs.syncReplica(t)
	mustAdd(t, writer, lagging) // not on the replica yet

	tests := []struct {
		name            string
		sni             string
		wantBundleGets  int64 // linearizable reads of bundle records
		wantSerialReads bool
	}{
		{"on the replica: serializable only", "synced.serial.test", 0, true},
		{"not on the replica yet: falls back to a linearizable read", "lagging.serial.test", 1, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := startManager(t, rs, Options{}) // a cold decoded cache
			rs.bundleGets.Store(0)
			rs.serial.Store(0)
			cert, err := m.GetCertificate(&tls.ClientHelloInfo{ServerName: tc.sni})
			if err != nil || cert == nil {
				t.Fatalf("GetCertificate(%s) = %v, %v", tc.sni, cert, err)
			}
			if got := cert.Leaf.DNSNames[0]; got != tc.sni {
				t.Errorf("served %s, want %s", got, tc.sni)
			}
			if got := rs.bundleGets.Load(); got != tc.wantBundleGets {
				t.Errorf("linearizable bundle reads = %d, want %d", got, tc.wantBundleGets)
			}
			if got := rs.serial.Load() > 0; got != tc.wantSerialReads {
				t.Errorf("serializable reads made = %v, want %v", got, tc.wantSerialReads)
			}
		})
	}
}

// callStore counts every read of the store.
type callStore struct {
	store.Store
	reads atomic.Int64
}

func (s *callStore) Get(ctx context.Context, key string) (store.KV, error) {
	s.reads.Add(1)
	return s.Store.Get(ctx, key)
}

func (s *callStore) List(ctx context.Context, prefix, after string, limit int) ([]store.KV, int64, error) {
	s.reads.Add(1)
	return s.Store.List(ctx, prefix, after, limit)
}

// TestUnknownSNIFloodReadsNothing checks that handshakes for random names
// are answered from the in-memory index, which holds every installed name:
// a flood of unknown SNI costs the store nothing, so it needs no negative
// cache.
func TestUnknownSNIFloodReadsNothing(t *testing.T) {
	p := newPKI(t)
	tests := []struct {
		name      string
		opts      Options
		wantReads int64 // the default certificate's first load: bundle and chain
		wantCert  bool
	}{
		{"reject", Options{UnknownSNI: UnknownReject}, 0, false},
		{"default certificate", Options{UnknownSNI: UnknownDefault, DefaultHostname: "*.known.test"}, 2, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, _ := openStore(t)
			cs := &callStore{Store: st}
			m := startManager(t, cs, tc.opts)
			mustAdd(t, m, p.leaf(t, leafSpec{names: []string{"*.known.test", "known.test"}}))
			m.cache.remove(m.idx.lookup("known.test")[0].id) // start cold
			cs.reads.Store(0)
			for i := range 10000 {
				cert, err := m.GetCertificate(&tls.ClientHelloInfo{ServerName: fmt.Sprintf("r%d.random%d.example", i, i%97)})
				if err != nil || (cert != nil) != tc.wantCert {
					t.Fatalf("GetCertificate(random) = %v, %v; want a certificate: %v", cert, err, tc.wantCert)
				}
			}
			if got := cs.reads.Load(); got != tc.wantReads {
				t.Errorf("store reads for 10,000 unknown names = %d, want %d", got, tc.wantReads)
			}
		})
	}
}
