package certs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"gatehouse/internal/store"
	"gatehouse/internal/store/etcd"
	"gatehouse/internal/store/etcd/etcdtest"
)

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func openEtcd(t *testing.T, c *etcdtest.Cluster, prefix string, mod func(*etcd.Options)) *etcd.Store {
	t.Helper()
	opts := etcd.Options{Endpoints: c.Endpoints(), Prefix: prefix, DialTimeout: 2 * time.Second, RequestTimeout: 2 * time.Second}
	if mod != nil {
		mod(&opts)
	}
	s, err := etcd.Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// served reports the names the manager's index serves, of those given.
func servedNames(m *Manager, names ...string) []string {
	var out []string
	for _, n := range names {
		if es, _ := m.lookup(n); len(es) > 0 {
			out = append(out, n)
		}
	}
	return out
}

func TestSnapshotFile(t *testing.T) {
	ix := newIndex()
	notAfter := time.Unix(1900000000, 0).UTC()
	ix.put("a.example.com", entry{id: "0123456789abcdef0123", keyType: "ecdsa-p256", notAfter: notAfter})
	ix.put("a.example.com", entry{id: "1123456789abcdef0123", keyType: "rsa-2048", notAfter: notAfter})
	ix.put("*.example.com", entry{id: "2123456789abcdef0123", keyType: "odd-type", notAfter: notAfter})
	dir := t.TempDir()
	if _, err := writeSnapshot(dir, "etcd cluster x prefix /p/", 42, time.Unix(5, 0), ix.capture()); err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(filepath.Join(dir, snapshotFile))
	if err != nil {
		t.Fatal(err)
	}
	s, err := readSnapshot(dir)
	if err != nil {
		t.Fatalf("reading back: %v", err)
	}
	got := newIndex()
	got.replace(s.b)
	for _, name := range []string{"a.example.com", "*.example.com"} {
		if diff := cmp.Diff(got.lookup(name), ix.lookup(name), cmp.AllowUnexported(entry{})); diff != "" {
			t.Errorf("entries of %s (-got +want):\n%s", name, diff)
		}
	}
	if s.rev != 42 || s.identity != "etcd cluster x prefix /p/" {
		t.Errorf("read rev %d identity %q, want 42 and the written identity", s.rev, s.identity)
	}

	flip := bytes.Clone(good)
	flip[len(flip)/2] ^= 1
	version := bytes.Clone(good)
	version[len(snapshotMagic)] = 9
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "not an index snapshot"},
		{"garbage", []byte(strings.Repeat("x", 100)), "not an index snapshot"},
		{"truncated", good[:len(good)-10], "checksum mismatch"},
		{"flipped bit", flip, "checksum mismatch"},
		{"other version", version, "version 9 is not supported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := t.TempDir()
			if err := os.WriteFile(filepath.Join(d, snapshotFile), tc.data, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := readSnapshot(d)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("readSnapshot: %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if _, err := readSnapshot(t.TempDir()); !errors.Is(err, errNoSnapshot) {
		t.Errorf("readSnapshot of an empty dir: %v, want errNoSnapshot", err)
	}
}

// TestRestartFromSnapshot restarts a node whose store changed while it was
// down: it starts from its snapshot, and once Start returns it serves the
// changes (a removed certificate is gone), unless the store's history was
// compacted meanwhile, when it lists the store again; a snapshot of another
// store or a damaged one is ignored.
func TestRestartFromSnapshot(t *testing.T) {
	c := etcdtest.Start(t, 1)
	p := newPKI(t)
	for _, tc := range []struct {
		name     string
		compact  bool   // compact the history after the changes
		damage   bool   // damage the snapshot file
		prefix2  string // restart against another prefix ("" the same)
		wantLog  string
		wantLive []string
	}{
		{name: "resume the watch", wantLog: "loaded from the local snapshot", wantLive: []string{"keep.test", "new.test"}},
		{name: "compacted meanwhile", compact: true, wantLog: "relisting certificate names", wantLive: []string{"keep.test", "new.test"}},
		{name: "damaged snapshot", damage: true, wantLog: "ignoring the local certificate index snapshot", wantLive: []string{"keep.test", "new.test"}},
		{name: "another store", prefix2: "/other/", wantLog: "of another store", wantLive: nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prefix := "/" + strings.ReplaceAll(tc.name, " ", "-") + "/"
			st := openEtcd(t, c, prefix, nil)
			dir := t.TempDir()
			keep, gone, added := p.leaf(t, leafSpec{names: []string{"keep.test"}}), p.leaf(t, leafSpec{names: []string{"gone.test"}}), p.leaf(t, leafSpec{names: []string{"new.test"}})

			m1 := NewManager(st, testKEK(t), Options{Dir: dir})
			if err := m1.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			mustAdd(t, m1, keep)
			goneInfo := mustAdd(t, m1, gone)
			m1.Close()
			if _, err := os.Stat(filepath.Join(dir, snapshotFile)); err != nil {
				t.Fatalf("no snapshot after Close: %v", err)
			}

			// Changes while the node is down, by another node.
			other := startManager(t, st, Options{})
			if err := other.Remove(context.Background(), goneInfo.ID); err != nil {
				t.Fatal(err)
			}
			mustAdd(t, other, added)
			if tc.compact {
				rev, err := st.Rev(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				if err := st.Compact(context.Background(), rev); err != nil {
					t.Fatal(err)
				}
			}
			if tc.damage {
				path := filepath.Join(dir, snapshotFile)
				b, _ := os.ReadFile(path)
				b[len(b)/2] ^= 0xff
				os.WriteFile(path, b, 0o600)
			}
			st2 := st
			if tc.prefix2 != "" {
				st2 = openEtcd(t, c, tc.prefix2, nil)
			}
			var logs syncBuffer
			m2 := NewManager(st2, testKEK(t), Options{Dir: dir, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if err := m2.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			defer m2.Close()
			if diff := cmp.Diff(servedNames(m2, "keep.test", "gone.test", "new.test"), tc.wantLive); diff != "" {
				t.Errorf("served right after Start (-got +want):\n%s", diff)
			}
			if !strings.Contains(logs.String(), tc.wantLog) {
				t.Errorf("log does not say %q:\n%s", tc.wantLog, logs.String())
			}
		})
	}
}

// TestStartWithStoreDown restarts a node while etcd is down: it serves
// what its snapshot and local bundle cache hold, and catches up when etcd
// is back.
func TestStartWithStoreDown(t *testing.T) {
	c := etcdtest.Start(t, 1)
	p := newPKI(t)
	dir := t.TempDir()
	st := openEtcd(t, c, "/down/", nil)
	m1 := NewManager(st, testKEK(t), Options{Dir: dir})
	if err := m1.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	warm, cold, later := p.leaf(t, leafSpec{names: []string{"warm.test"}}), p.leaf(t, leafSpec{names: []string{"cold.test"}}), p.leaf(t, leafSpec{names: []string{"later.test"}})
	mustAdd(t, m1, warm)
	mustAdd(t, m1, cold)
	addr := serveTLS(t, m1.TLSConfig(nil))
	if _, err := handshake(t, addr, "warm.test", nil); err != nil {
		t.Fatal(err)
	}
	m1.disk().flush()
	// The snapshot saved at Close is at the revision the watch applied.
	rev, err := st.Rev(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the watch to apply the adds", func() bool { return m1.currentRev() >= rev })
	m1.Close()
	st.Close()

	c.StopAll()
	st2 := openEtcd(t, c, "/down/", func(o *etcd.Options) { o.DialTimeout, o.RequestTimeout = 200*time.Millisecond, 300*time.Millisecond })
	var logs syncBuffer
	m2 := NewManager(st2, testKEK(t), Options{Dir: dir, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	start := time.Now()
	if err := m2.Start(context.Background()); err != nil {
		t.Fatalf("Start with etcd down: %v", err)
	}
	defer m2.Close()
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Start with etcd down took %v", d)
	}
	if !strings.Contains(logs.String(), "certificate store unreachable at start") {
		t.Errorf("no warning that the store is unreachable:\n%s", logs.String())
	}
	addr2 := serveTLS(t, m2.TLSConfig(nil))
	got, err := handshake(t, addr2, "warm.test", nil)
	if err != nil {
		t.Fatalf("handshake for a locally cached bundle with etcd down: %v", err)
	}
	if !got.Equal(warm.cert) {
		t.Errorf("served %v, want the installed leaf", got.Subject)
	}
	if _, err := handshake(t, addr2, "cold.test", nil); err == nil {
		t.Errorf("handshake for a bundle never loaded succeeded with etcd down")
	}

	c.RestartAll()
	writer := startManager(t, openEtcd(t, c, "/down/", nil), Options{})
	mustAdd(t, writer, later)
	eventually(t, "the node to catch up once etcd is back", func() bool { return len(servedNames(m2, "later.test")) == 1 })
	eventually(t, "the caught-up log line", func() bool { return strings.Contains(logs.String(), "caught up") })
}

// storeCalls counts bundle reads of an etcd store, keeping it remote.
type storeCalls struct {
	*etcd.Store
	bundleGets atomicCount
}

type atomicCount struct {
	mu sync.Mutex
	n  int
}

func (a *atomicCount) add() {
	a.mu.Lock()
	a.n++
	a.mu.Unlock()
}

func (a *atomicCount) get() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.n
}

func (s *storeCalls) Get(ctx context.Context, key string) (store.KV, error) {
	if strings.HasPrefix(key, prefixBundles) {
		s.bundleGets.add()
	}
	return s.Store.Get(ctx, key)
}

func (s *storeCalls) GetSerializable(ctx context.Context, key string) (store.KV, error) {
	if strings.HasPrefix(key, prefixBundles) {
		s.bundleGets.add()
	}
	return s.Store.GetSerializable(ctx, key)
}

// TestFailedLoadsWhileStoreDown floods handshakes for a name whose bundle
// was never loaded while etcd is down: the store is asked a bounded number
// of times, and the handshakes fail fast instead of each waiting for it.
func TestFailedLoadsWhileStoreDown(t *testing.T) {
	c := etcdtest.Start(t, 1)
	p := newPKI(t)
	st := &storeCalls{Store: openEtcd(t, c, "/flood/", func(o *etcd.Options) { o.RequestTimeout = 300 * time.Millisecond })}
	m := startManager(t, st, Options{})
	mustAdd(t, m, p.leaf(t, leafSpec{names: []string{"cold.test"}}))
	addr := serveTLS(t, m.TLSConfig(nil))
	c.StopAll()
	st.bundleGets = atomicCount{} // Add read it too

	const flood = 40
	start := time.Now()
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range flood / 4 {
				if _, err := handshake(t, addr, "cold.test", nil); err == nil {
					t.Errorf("handshake succeeded with etcd down and nothing cached")
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	// One read per failedLoadTTL at most (plus the first).
	allowed := 1 + int(elapsed/failedLoadTTL)
	if got := st.bundleGets.get(); got < 1 || got > allowed {
		t.Errorf("%d handshakes in %v read the bundle %d times, want 1..%d", flood, elapsed, got, allowed)
	}
}

// TestLocalBundleCache checks that bundles read from etcd are kept in the
// local cache sealed as stored, and dropped once removed.
func TestLocalBundleCache(t *testing.T) {
	c := etcdtest.Start(t, 1)
	p := newPKI(t)
	st := openEtcd(t, c, "/disk/", nil)
	m := startManager(t, st, Options{Dir: t.TempDir()})
	l := p.leaf(t, leafSpec{names: []string{"disk.test"}})
	info := mustAdd(t, m, l)
	addr := serveTLS(t, m.TLSConfig(nil))
	if _, err := handshake(t, addr, "disk.test", nil); err != nil {
		t.Fatal(err)
	}
	m.disk().flush()
	rec, ok := m.disk().record(info.ID)
	if !ok {
		t.Fatal("bundle not in the local cache after a handshake")
	}
	kv, err := st.Get(context.Background(), bundleKey(info.ID))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(rec, kv.Value) {
		t.Errorf("local cache holds %d bytes that differ from the stored record", len(rec))
	}
	if bytes.Contains(rec, l.pkcs8) {
		t.Errorf("local cache holds the private key unsealed")
	}
	if err := m.Remove(context.Background(), info.ID); err != nil {
		t.Fatal(err)
	}
	m.disk().flush()
	if _, ok := m.disk().record(info.ID); ok {
		t.Errorf("removed bundle still in the local cache")
	}
}

func TestDiskCacheBound(t *testing.T) {
	dc, err := openDiskCache(t.TempDir(), "id", 10_000, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer dc.close()
	rec := bytes.Repeat([]byte("r"), 1000)
	for i := range 30 {
		dc.put(strings.Repeat("0", 19)+string(rune('a'+i%26))+string(rune('a'+i/26)), rec, nil)
		dc.flush()
	}
	if got := dc.bytes(); got > 10_000 {
		t.Errorf("cache holds %d bytes, bound 10000", got)
	}
	if _, ok := dc.record(strings.Repeat("0", 19) + "aa"); ok {
		t.Errorf("the oldest record survived past the bound")
	}
	if _, ok := dc.record(strings.Repeat("0", 19) + "db"); !ok {
		t.Errorf("the newest record was dropped")
	}
}

// TestFirstLoadFailsFastWhileStoreDown: once the store is known not to
// answer, even the first handshake for a name this node never loaded fails
// within unreachableLoadTimeout, not the store's request timeout.
func TestFirstLoadFailsFastWhileStoreDown(t *testing.T) {
	c := etcdtest.Start(t, 1)
	p := newPKI(t)
	st := openEtcd(t, c, "/fast/", func(o *etcd.Options) {
		o.RequestTimeout = 10 * time.Second
		o.HealthInterval = 50 * time.Millisecond
	})
	m := startManager(t, st, Options{})
	mustAdd(t, m, p.leaf(t, leafSpec{names: []string{"never-loaded.test"}}))
	addr := serveTLS(t, m.TLSConfig(nil))
	c.StopAll()
	deadline := time.Now().Add(15 * time.Second)
	for st.Reachable() {
		if time.Now().After(deadline) {
			t.Fatal("store still reported reachable 15s after etcd stopped")
		}
		time.Sleep(20 * time.Millisecond)
	}
	start := time.Now()
	if _, err := handshake(t, addr, "never-loaded.test", nil); err == nil {
		t.Fatal("handshake succeeded with etcd down and nothing cached")
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("first handshake for an uncached name with etcd known down failed after %v, want about %v", took, unreachableLoadTimeout)
	}
}

// TestSnapshotAheadOfStore restarts a node against a store whose revision
// is behind the node's snapshot: same cluster id and prefix, but an etcd
// restored from a backup older than the snapshot. The snapshot is not of
// this store's history: once Start returns the node serves what the store
// holds (a name only the snapshot knows is gone, one added since is
// served), and the snapshot saved at Close is the store's.
func TestSnapshotAheadOfStore(t *testing.T) {
	c := etcdtest.Start(t, 1)
	p := newPKI(t)
	st := openEtcd(t, c, "/ahead/", nil)
	dir := t.TempDir()
	ctx := context.Background()

	m1 := NewManager(st, testKEK(t), Options{Dir: dir})
	if err := m1.Start(ctx); err != nil {
		t.Fatal(err)
	}
	mustAdd(t, m1, p.leaf(t, leafSpec{names: []string{"real.test"}}))
	rev, err := st.Rev(ctx)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the watch to apply the add", func() bool { return m1.currentRev() >= rev })
	m1.Close()

	// The snapshot claims a revision the store has not reached, with a
	// name the store never held.
	snap, err := readSnapshot(dir)
	if err != nil {
		t.Fatal(err)
	}
	ix := newIndex()
	ix.replace(snap.b)
	ix.put("ghost.test", entry{id: "0123456789abcdef0123", keyType: "ecdsa-p256", notAfter: time.Now().Add(24 * time.Hour)})
	if _, err := writeSnapshot(dir, snap.identity, snap.rev+1_000_000, time.Now(), ix.capture()); err != nil {
		t.Fatal(err)
	}
	mustAdd(t, startManager(t, st, Options{}), p.leaf(t, leafSpec{names: []string{"after.test"}}))

	var logs syncBuffer
	m2 := NewManager(st, testKEK(t), Options{Dir: dir, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err := m2.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(servedNames(m2, "real.test", "ghost.test", "after.test"), []string{"real.test", "after.test"}); diff != "" {
		t.Errorf("served right after Start (-got +want):\n%s", diff)
	}
	m2.Close()
	snap2, err := readSnapshot(dir)
	if err != nil {
		t.Fatal(err)
	}
	storeRev, err := st.Rev(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if snap2.rev > storeRev {
		t.Errorf("snapshot saved at Close has revision %d, ahead of the store's %d", snap2.rev, storeRev)
	}
	if !strings.Contains(logs.String(), "ahead of the store") {
		t.Errorf("log does not say the snapshot is ahead of the store:\n%s", logs.String())
	}
}

// TestForeignSnapshotRelist starts a node from the snapshot of another
// store while etcd is down, so that the snapshot cannot be checked at
// start; when etcd answers, the snapshot turns out to be of another store
// and the first listings of the new one fail. The node keeps relisting
// until one succeeds (it must not follow the new store's watch on top of
// the foreign index), and meanwhile never saves the foreign index as the
// new store's.
func TestForeignSnapshotRelist(t *testing.T) {
	c := etcdtest.Start(t, 1)
	p := newPKI(t)
	dir := t.TempDir()
	ctx := context.Background()
	stA := openEtcd(t, c, "/foreign-a/", nil)
	m1 := NewManager(stA, testKEK(t), Options{Dir: dir})
	if err := m1.Start(ctx); err != nil {
		t.Fatal(err)
	}
	mustAdd(t, m1, p.leaf(t, leafSpec{names: []string{"a-only.test"}}))
	m1.Close()

	c.StopAll()
	stB := openEtcd(t, c, "/foreign-b/", func(o *etcd.Options) {
		o.DialTimeout, o.RequestTimeout, o.HealthInterval = 200*time.Millisecond, 300*time.Millisecond, 50*time.Millisecond
	})
	failing := &failingScan{Store: stB}
	failing.failFor(2)
	var logs syncBuffer
	m2 := NewManager(failing, testKEK(t), Options{Dir: dir, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err := m2.Start(ctx); err != nil {
		t.Fatalf("Start with etcd down: %v", err)
	}
	defer m2.Close()
	c.RestartAll()
	mustAdd(t, startManager(t, openEtcd(t, c, "/foreign-b/", nil), Options{}), p.leaf(t, leafSpec{names: []string{"b-only.test"}}))
	eventually(t, "the node to find the snapshot is of another store", func() bool {
		return strings.Contains(logs.String(), "of another store")
	})

	// While the listing fails, a save (as on a tick or at Close) must not
	// name the foreign index as store B's.
	eventually(t, "a failed relisting", func() bool { return failing.scans.get() > 0 })
	m2.pmu.Lock()
	m2.watchRev++ // as if a watch event had been applied
	m2.pmu.Unlock()
	m2.saveSnapshot()
	idB, err := stB.Identity(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if snap, err := readSnapshot(dir); err != nil {
		t.Fatal(err)
	} else if snap.identity == idB {
		t.Errorf("the index of store A was saved as store B's (rev %d)", snap.rev)
	}

	eventually(t, "the node to serve store B's names only", func() bool {
		return cmp.Equal(servedNames(m2, "a-only.test", "b-only.test"), []string{"b-only.test"})
	})
	if got := failing.scans.get(); got < 3 {
		t.Errorf("%d listings, want at least 3 (two failed)", got)
	}
}

// failingScan is an etcd store whose first Scans fail.
type failingScan struct {
	*etcd.Store
	scans atomicCount
	fail  atomicCount // Scans left to fail, counted down
}

func (f *failingScan) failFor(n int) {
	for range n {
		f.fail.add()
	}
}

func (f *failingScan) Scan(ctx context.Context, prefix string, fn func(key, value []byte) error) (int64, error) {
	f.scans.add()
	f.fail.mu.Lock()
	failing := f.fail.n > 0
	if failing {
		f.fail.n--
	}
	f.fail.mu.Unlock()
	if failing {
		return 0, errors.New("scan refused for the test")
	}
	return f.Store.Scan(ctx, prefix, fn)
}

// TestDiskCacheHeldAtStart starts a node while the local bundle cache is
// locked by another process, as in a binary upgrade, where the process
// being replaced keeps it until it has drained. The new node opens it once
// released, and drops from it the bundles removed meanwhile.
func TestDiskCacheHeldAtStart(t *testing.T) {
	c := etcdtest.Start(t, 1)
	p := newPKI(t)
	st := openEtcd(t, c, "/held/", nil)
	dir := t.TempDir()
	m1 := NewManager(st, testKEK(t), Options{Dir: dir})
	if err := m1.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	keep, gone := mustAdd(t, m1, p.leaf(t, leafSpec{names: []string{"keep.test"}})), mustAdd(t, m1, p.leaf(t, leafSpec{names: []string{"gone.test"}}))
	addr := serveTLS(t, m1.TLSConfig(nil))
	for _, name := range []string{"keep.test", "gone.test"} {
		if _, err := handshake(t, addr, name, nil); err != nil {
			t.Fatal(err)
		}
	}
	m1.Close()
	// The old process holds the cache while m2 starts, and m2 removes a
	// bundle before it has the cache.
	held, err := openDiskCache(dir, "", 1<<20, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	m2 := startManager(t, st, Options{Dir: dir})
	if _, _, ok := m2.LocalCacheStats(); ok {
		t.Fatal("the new node opened a bundle cache that another process holds")
	}
	if err := m2.Remove(context.Background(), gone.ID); err != nil {
		t.Fatal(err)
	}
	held.close() // the old process stops and lets go of the cache

	eventually(t, "the new node to open the released bundle cache", func() bool {
		_, _, ok := m2.LocalCacheStats()
		return ok
	})
	d := m2.disk()
	d.flush()
	got := map[string]bool{}
	for _, id := range []string{keep.ID, gone.ID} {
		_, got[id] = d.record(id)
	}
	if diff := cmp.Diff(got, map[string]bool{keep.ID: true, gone.ID: false}); diff != "" {
		t.Errorf("bundles in the reopened cache (-got +want):\n%s", diff)
	}
}

// TestDiskCacheDiscardedAfterCrash: the cache is written without fsync, so
// a file not closed cleanly is started anew; one closed cleanly is kept.
func TestDiskCacheDiscardedAfterCrash(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	id := strings.Repeat("0", 19) + "aa"
	dc, err := openDiskCache(dir, "id", 1<<20, log)
	if err != nil {
		t.Fatal(err)
	}
	dc.put(id, []byte("record"), nil)
	dc.flush()
	if err := dc.close(); err != nil {
		t.Fatal(err)
	}
	dc, err = openDiskCache(dir, "id", 1<<20, log)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := dc.record(id); !ok {
		t.Fatal("record lost across a clean close and reopen")
	}
	// A crash: the file is released without the clean close.
	dc.put(id+"b", []byte("record"), nil)
	dc.flush()
	dc.smu.Lock()
	dc.closed = true
	close(dc.ops)
	dc.smu.Unlock()
	<-dc.done
	dc.db.Close()

	dc, err = openDiskCache(dir, "id", 1<<20, log)
	if err != nil {
		t.Fatal(err)
	}
	defer dc.close()
	if _, ok := dc.record(id); ok {
		t.Error("a cache not closed cleanly was kept; want it started anew")
	}
	if got := dc.bytes(); got != 0 {
		t.Errorf("cache started anew holds %d bytes, want 0", got)
	}
}

// TestSnapshotOnlyWhenIndexChanged: writes elsewhere in the store move its
// revision but do not rewrite the snapshot; a name change does.
func TestSnapshotOnlyWhenIndexChanged(t *testing.T) {
	c := etcdtest.Start(t, 1)
	p := newPKI(t)
	ctx := context.Background()
	st := openEtcd(t, c, "/snapdiff/", nil)
	dir := t.TempDir()
	m := NewManager(st, testKEK(t), Options{Dir: dir})
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	waitApplied := func() {
		t.Helper()
		rev, err := st.Rev(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// A progress report moves the watched revision past other writes.
		eventually(t, "the watch to reach the store's revision", func() bool {
			st.RequestProgress(ctx)
			return m.currentRev() >= rev
		})
	}
	mustAdd(t, m, p.leaf(t, leafSpec{names: []string{"one.test"}}))
	waitApplied()
	m.saveSnapshot()
	first, err := readSnapshot(dir)
	if err != nil {
		t.Fatal(err)
	}

	for i := range 5 { // status observations, routes, …
		if _, err := store.PutKV(ctx, st, fmt.Sprintf("status/nodes/n%d", i), []byte("{}")); err != nil {
			t.Fatal(err)
		}
	}
	waitApplied()
	m.saveSnapshot()
	if again, err := readSnapshot(dir); err != nil || again.rev != first.rev {
		t.Fatalf("snapshot after unrelated writes: rev %d, %v; want it left at %d", again.rev, err, first.rev)
	}

	mustAdd(t, m, p.leaf(t, leafSpec{names: []string{"two.test"}}))
	waitApplied()
	m.saveSnapshot()
	if after, err := readSnapshot(dir); err != nil || after.rev <= first.rev {
		t.Fatalf("snapshot after a name change: rev %d, %v; want past %d", after.rev, err, first.rev)
	}
}
