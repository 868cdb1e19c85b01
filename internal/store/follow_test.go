package store_test

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"

	"gatehouse/internal/store"
	"gatehouse/internal/store/bolt"
	"gatehouse/internal/store/etcd"
	"gatehouse/internal/store/etcd/etcdtest"
)

const waitFor = 20 * time.Second

// model is a Handler that keeps a map of the followed keys and checks what
// Follow promises: Apply gets responses newer than the last Reset, in
// increasing revision order, each once.
type model struct {
	t       *testing.T
	mu      sync.Mutex
	kv      map[string]string
	rev     int64 // last reset or applied revision
	resets  int
	applied int // responses applied
	block   chan struct{}
	changed chan struct{}
}

func newModel(t *testing.T) *model {
	return &model{t: t, kv: map[string]string{}, changed: make(chan struct{}, 1)}
}

func (m *model) Reset(ctx context.Context, l *store.Listing) error {
	kv := map[string]string{}
	for e, err := range l.All() {
		if err != nil {
			return err
		}
		kv[e.Key] = string(e.Value)
	}
	m.mu.Lock()
	m.kv, m.rev = kv, l.Rev()
	m.resets++
	m.mu.Unlock()
	m.signal()
	return nil
}

func (m *model) Apply(resps []store.WatchResponse) {
	if b := m.block; b != nil {
		<-b
	}
	m.mu.Lock()
	for _, r := range resps {
		if r.Rev <= m.rev {
			m.t.Errorf("applied revision %d after %d: out of order or twice", r.Rev, m.rev)
		}
		m.rev = r.Rev
		m.applied++
		for _, ev := range r.Events {
			if ev.KV.ModRev != r.Rev {
				m.t.Errorf("event of %q at revision %d in the response of %d", ev.KV.Key, ev.KV.ModRev, r.Rev)
			}
			switch ev.Type {
			case store.EventPut:
				m.kv[ev.KV.Key] = string(ev.KV.Value)
			case store.EventDelete:
				delete(m.kv, ev.KV.Key)
			}
		}
	}
	m.mu.Unlock()
	m.signal()
}

func (m *model) signal() {
	select {
	case m.changed <- struct{}{}:
	default:
	}
}

func (m *model) state() (map[string]string, int64, int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.kv), m.rev, m.resets
}

// waitSame waits until the model holds exactly what st has under prefix at
// st's current revision.
func (m *model) waitSame(t *testing.T, st store.Store, prefix string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	kvs, rev, err := st.List(ctx, prefix, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, kv := range kvs {
		want[kv.Key] = string(kv.Value)
	}
	for {
		got, grev, _ := m.state()
		if grev >= rev && gocmp.Equal(got, want) {
			return
		}
		select {
		case <-m.changed:
		case <-ctx.Done():
			t.Fatalf("follower at revision %d, store at %d; diff (-got +want):\n%s", grev, rev, gocmp.Diff(got, want))
		}
	}
}

// logBuf collects log lines for assertions.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuf) count(s string) int { return strings.Count(l.String(), s) }

func (l *logBuf) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

func put(t *testing.T, st store.Store, key, value string) int64 {
	t.Helper()
	rev, err := store.PutKV(context.Background(), st, key, []byte(value))
	if err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
	return rev
}

type compactor interface {
	Compact(ctx context.Context, rev int64) error
}

// followBasics runs the tests every backend passes.
func followBasics(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("ListWatchInOrder", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			opts store.FollowOptions
		}{
			{"OneList", store.FollowOptions{}},
			{"Pages", store.FollowOptions{PageSize: 3}},
			{"Stream", store.FollowOptions{Stream: true}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				st := open(t)
				for i := range 10 {
					put(t, st, fmt.Sprintf("f/%02d", i), "v0")
				}
				put(t, st, "other", "x")
				m := newModel(t)
				ctx, cancel := context.WithCancel(context.Background())
				f := store.Follow(ctx, st, "f/", tc.opts, m)
				defer func() { cancel(); <-f.Done() }()
				m.waitSame(t, st, "f/")
				for i := range 10 {
					put(t, st, fmt.Sprintf("f/%02d", i%4), fmt.Sprintf("v%d", i))
				}
				if _, err := st.Txn(context.Background(), nil, []store.Op{
					store.Delete("f/05"), store.Put("f/new", []byte("n")), store.Put("g/x", []byte("y")),
				}); err != nil {
					t.Fatal(err)
				}
				m.waitSame(t, st, "f/")
				if _, _, resets := m.state(); resets != 1 {
					t.Errorf("%d resets, want 1", resets)
				}
			})
		}
	})

	t.Run("LoadedWatchesFromRev", func(t *testing.T) {
		st := open(t)
		put(t, st, "f/a", "1")
		m := newModel(t)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		rev, err := store.Load(ctx, st, "f/", store.FollowOptions{}, m)
		if err != nil {
			t.Fatal(err)
		}
		// Written after Load and before Follow: replayed by the watch.
		put(t, st, "f/b", "2")
		f := store.Follow(ctx, st, "f/", store.FollowOptions{Loaded: true, FromRev: rev}, m)
		put(t, st, "f/c", "3")
		m.waitSame(t, st, "f/")
		cancel()
		<-f.Done()
		if _, _, resets := m.state(); resets != 1 {
			t.Errorf("%d resets, want the one of Load", resets)
		}
		if !errors.Is(f.Err(), context.Canceled) {
			t.Errorf("Err = %v, want context.Canceled", f.Err())
		}
	})

	t.Run("EmptyStoreFirstWrite", func(t *testing.T) {
		// A store never written lists at revision 0, and a watch from 0
		// means "from now on": a write just after must still arrive.
		for range 5 {
			st := open(t)
			m := newModel(t)
			ctx, cancel := context.WithCancel(context.Background())
			rev, err := store.Load(ctx, st, "f/", store.FollowOptions{}, m)
			if err != nil {
				t.Fatal(err)
			}
			put(t, st, "f/first", "1")
			f := store.Follow(ctx, st, "f/", store.FollowOptions{Loaded: true, FromRev: rev}, m)
			m.waitSame(t, st, "f/")
			cancel()
			<-f.Done()
		}
	})

	t.Run("CompactedResumeRelists", func(t *testing.T) {
		st := open(t)
		c, ok := st.(compactor)
		if !ok {
			t.Fatalf("%T cannot compact", st)
		}
		put(t, st, "x", "0")
		m := newModel(t)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		rev, err := store.Load(ctx, st, "f/", store.FollowOptions{}, m)
		if err != nil {
			t.Fatal(err)
		}
		put(t, st, "f/a", "1")
		put(t, st, "f/b", "2")
		last := put(t, st, "x", "3")
		if err := c.Compact(ctx, last); err != nil {
			t.Fatal(err)
		}
		var logs logBuf
		f := store.Follow(ctx, st, "f/", store.FollowOptions{Loaded: true, FromRev: rev, What: "things", Logger: logs.logger()}, m)
		m.waitSame(t, st, "f/")
		if _, _, resets := m.state(); resets != 2 {
			t.Errorf("%d resets, want 2 (Load, then after compaction)", resets)
		}
		if n := logs.count("relisting things"); n != 1 {
			t.Errorf("%d relisting lines, want 1; log:\n%s", n, logs.String())
		}
		put(t, st, "f/c", "4")
		m.waitSame(t, st, "f/")
		cancel()
		<-f.Done()
	})

	t.Run("Resync", func(t *testing.T) {
		st := open(t)
		put(t, st, "f/a", "1")
		m := newModel(t)
		resync := make(chan struct{}, 1)
		ctx, cancel := context.WithCancel(context.Background())
		f := store.Follow(ctx, st, "f/", store.FollowOptions{Resync: resync}, m)
		defer func() { cancel(); <-f.Done() }()
		m.waitSame(t, st, "f/")
		resync <- struct{}{}
		deadline := time.Now().Add(waitFor)
		for {
			if _, _, n := m.state(); n == 2 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("no reset after a resync request")
			}
			<-m.changed
		}
		put(t, st, "f/b", "2")
		m.waitSame(t, st, "f/")
	})

	t.Run("StoreClosed", func(t *testing.T) {
		st := open(t)
		m := newModel(t)
		var logs logBuf
		f := store.Follow(context.Background(), st, "f/", store.FollowOptions{What: "things", Logger: logs.logger()}, m)
		m.waitSame(t, st, "f/")
		st.Close()
		select {
		case <-f.Done():
		case <-time.After(waitFor):
			t.Fatalf("follow did not end when the store closed; log:\n%s", logs.String())
		}
		if !errors.Is(f.Err(), store.ErrClosed) {
			t.Errorf("Err = %v, want ErrClosed", f.Err())
		}
		if n := logs.count("things watch ended: store closed"); n != 1 {
			t.Errorf("%d store-closed lines, want 1; log:\n%s", n, logs.String())
		}
	})
}

func TestFollowBolt(t *testing.T) {
	open := func(t *testing.T) store.Store {
		s, err := bolt.Open(filepath.Join(t.TempDir(), "s.db"), bolt.Options{WatchQueue: 8})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	followBasics(t, open)

	// A consumer that falls behind loses its watch (ErrCompacted) in the
	// middle of following, and comes back by relisting.
	t.Run("CompactedMidFollow", func(t *testing.T) {
		st := open(t)
		m := newModel(t)
		var logs logBuf
		ctx, cancel := context.WithCancel(context.Background())
		f := store.Follow(ctx, st, "f/", store.FollowOptions{What: "things", Logger: logs.logger()}, m)
		defer func() { cancel(); <-f.Done() }()
		m.waitSame(t, st, "f/")
		m.mu.Lock()
		m.block = make(chan struct{})
		m.mu.Unlock()
		for i := range 50 {
			put(t, st, fmt.Sprintf("f/%02d", i%7), fmt.Sprint(i))
		}
		close(m.block)
		m.waitSame(t, st, "f/")
		if _, _, resets := m.state(); resets < 2 {
			t.Errorf("%d resets, want a relisting after the watch fell behind", resets)
		}
		if logs.count("relisting things") < 1 {
			t.Errorf("no relisting line; log:\n%s", logs.String())
		}
	})
}

var etcdPrefixes atomic.Int64

// openEtcd opens a store over endpoints; requestTimeout 0 means a
// generous 5 s, for machines under load.
func openEtcd(t *testing.T, endpoints []string, prefix string, requestTimeout time.Duration) *etcd.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	s, err := etcd.Open(ctx, etcd.Options{
		Endpoints:      endpoints,
		Prefix:         prefix,
		RequestTimeout: cmp.Or(requestTimeout, 5*time.Second),
		HealthInterval: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("opening etcd: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestFollowEtcd(t *testing.T) {
	c := etcdtest.Start(t, 3)
	newPrefix := func() string { return fmt.Sprintf("/follow%d", etcdPrefixes.Add(1)) }
	followBasics(t, func(t *testing.T) store.Store { return openEtcd(t, c.Endpoints(), newPrefix(), 0) })

	// The follower's member goes away; meanwhile the others take writes and
	// compact them; when it is back the watch cannot resume and the
	// follower relists.
	t.Run("CompactedWhileUnavailable", func(t *testing.T) {
		prefix := newPrefix()
		follower := openEtcd(t, c.Endpoints()[:1], prefix, 0)
		writer := openEtcd(t, c.Endpoints()[1:], prefix, 0)
		put(t, writer, "f/a", "1")
		m := newModel(t)
		var logs logBuf
		ctx, cancel := context.WithCancel(context.Background())
		f := store.Follow(ctx, follower, "f/", store.FollowOptions{What: "things", Logger: logs.logger()}, m)
		defer func() { cancel(); <-f.Done() }()
		m.waitSame(t, writer, "f/")
		c.Stop(0)
		put(t, writer, "f/b", "2")
		put(t, writer, "f/a", "3")
		last := put(t, writer, "f/c", "4")
		if err := writer.Compact(context.Background(), last); err != nil {
			t.Fatal(err)
		}
		c.Restart(0)
		m.waitSame(t, writer, "f/")
		if logs.count("relisting things") != 1 {
			t.Errorf("want one relisting line; log:\n%s", logs.String())
		}
		put(t, writer, "f/d", "5")
		m.waitSame(t, writer, "f/")
	})

	// A listing that fails because the store is down leaves the handler
	// as it is, is retried, logged once per failure, and the recovery once.
	t.Run("UnavailableThenBack", func(t *testing.T) {
		c1 := etcdtest.Start(t, 1)
		st := openEtcd(t, c1.Endpoints(), newPrefix(), time.Second)
		put(t, st, "f/a", "1")
		m := newModel(t)
		var logs logBuf
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		c1.StopAll()
		f := store.Follow(ctx, st, "f/", store.FollowOptions{What: "things", Logger: logs.logger(),
			Backoff: store.Backoff{Min: 10 * time.Millisecond, Max: 50 * time.Millisecond}}, m)
		deadline := time.Now().Add(waitFor)
		for logs.count("listing failed; retrying") < 2 {
			if time.Now().After(deadline) {
				t.Fatalf("no failures logged; log:\n%s", logs.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
		if _, _, resets := m.state(); resets != 0 {
			t.Fatalf("%d resets while the store was down; log:\n%s", resets, logs.String())
		}
		if !strings.Contains(logs.String(), "unavailable") {
			t.Errorf("failure lines do not say the store is unavailable; log:\n%s", logs.String())
		}
		c1.RestartAll()
		m.waitSame(t, st, "f/")
		// The restarted member may still be electing itself.
		for {
			_, err := store.PutKV(context.Background(), st, "f/b", []byte("2"))
			if err == nil {
				break
			}
			if !errors.Is(err, store.ErrUnavailable) || time.Now().After(deadline) {
				t.Fatal(err)
			}
		}
		m.waitSame(t, st, "f/")
		if n := logs.count("following things again"); n != 1 {
			t.Errorf("%d recovery lines, want 1; log:\n%s", n, logs.String())
		}
		cancel()
		<-f.Done()
	})
}

func TestFollowStop(t *testing.T) {
	st, err := bolt.Open(filepath.Join(t.TempDir(), "s.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	put(t, st, "f/a", "1")
	m := newModel(t)
	f := store.Follow(context.Background(), st, "f/", store.FollowOptions{}, m)
	m.waitSame(t, st, "f/")
	f.Stop()
	select {
	case <-f.Done():
	default:
		t.Fatal("Done not closed after Stop returned")
	}
	if !errors.Is(f.Err(), context.Canceled) {
		t.Errorf("Err after Stop = %v, want context.Canceled", f.Err())
	}
	f.Stop() // again: nothing
	var none *store.Follower
	none.Stop() // an owner that never started one
}
