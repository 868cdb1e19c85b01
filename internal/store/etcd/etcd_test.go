package etcd_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"gatehouse/internal/store"
	"gatehouse/internal/store/etcd"
	"gatehouse/internal/store/etcd/etcdtest"
	"gatehouse/internal/store/storetest"
)

var prefixes atomic.Int64

// open returns a store over c under a prefix of its own, closed when the
// test ends.
func open(t *testing.T, c *etcdtest.Cluster, mod func(*etcd.Options)) *etcd.Store {
	t.Helper()
	opts := etcd.Options{
		Endpoints:      c.Endpoints(),
		Prefix:         fmt.Sprintf("/test%d", prefixes.Add(1)),
		RequestTimeout: 2 * time.Second,
		HealthInterval: 100 * time.Millisecond,
	}
	if mod != nil {
		mod(&opts)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := etcd.Open(ctx, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	c := etcdtest.Start(t, 3)
	storetest.Run(t, func(t *testing.T) store.Store { return open(t, c, nil) })
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestLimits(t *testing.T) {
	c := etcdtest.Start(t, 1)
	s := open(t, c, nil)
	ctx := ctxT(t)
	many := func(n int) []store.Op {
		var ops []store.Op
		for i := range n {
			ops = append(ops, store.Put(fmt.Sprintf("k/%03d", i), []byte("v")))
		}
		return ops
	}
	var conds []store.Cond
	for i := range etcd.MaxTxnOps + 1 {
		conds = append(conds, store.Absent(fmt.Sprintf("c/%d", i)))
	}
	tests := []struct {
		name    string
		conds   []store.Cond
		ops     []store.Op
		wantErr error
		wantMsg string
	}{
		{"128 ops", nil, many(etcd.MaxTxnOps), nil, ""},
		{"129 ops", nil, many(etcd.MaxTxnOps + 1), store.ErrTooLarge, "129 operations"},
		{"129 conditions", conds, many(1), store.ErrTooLarge, "129 conditions"},
		{"2 MiB value", nil, []store.Op{store.Put("big", bytes.Repeat([]byte{1}, 2<<20))}, store.ErrTooLarge, "bytes of keys and values"},
		{"same key twice", nil, []store.Op{store.Put("d", []byte("1")), store.Delete("e"), store.Put("d", []byte("2"))}, nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before, err := s.Rev(ctx)
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.Txn(ctx, tc.conds, tc.ops)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("Txn error = %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				if !strings.Contains(err.Error(), tc.wantMsg) {
					t.Errorf("error %q does not mention %q", err, tc.wantMsg)
				}
				if after, _ := s.Rev(ctx); after != before {
					t.Errorf("Rev after a refused txn = %d, want %d", after, before)
				}
			}
		})
	}
	kv, err := s.Get(ctx, "d")
	if err != nil || string(kv.Value) != "2" {
		t.Errorf("Get(d) after a txn writing it twice = %q, %v; want the last value", kv.Value, err)
	}
}

func TestConflictNamesTheCondition(t *testing.T) {
	c := etcdtest.Start(t, 1)
	s := open(t, c, nil)
	ctx := ctxT(t)
	rev, err := store.PutKV(ctx, s, "a", []byte("1"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Txn(ctx, []store.Cond{{Key: "a", ModRev: rev}, store.Absent("a")}, []store.Op{store.Put("b", nil)})
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("error = %v, want ErrConflict", err)
	}
	if got, want := err.Error(), fmt.Sprintf(`txn condition on "a": key exists at revision %d, want absent`, rev); !strings.Contains(got, want) {
		t.Errorf("error = %q, want it to contain %q", got, want)
	}
}

// TestPrefixIsolation checks that two stores under different prefixes of one
// cluster see only their own keys.
func TestPrefixIsolation(t *testing.T) {
	c := etcdtest.Start(t, 1)
	a := open(t, c, func(o *etcd.Options) { o.Prefix = "/fleet-a" })
	b := open(t, c, func(o *etcd.Options) { o.Prefix = "/fleet-a2/" })
	ctx := ctxT(t)
	if _, err := store.PutKV(ctx, a, "k", []byte("a")); err != nil {
		t.Fatal(err)
	}
	if _, err := store.PutKV(ctx, b, "k", []byte("b")); err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]*etcd.Store{"a": a, "b": b} {
		kvs, _, err := s.List(ctx, "", "", 0)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, kv := range kvs {
			got = append(got, kv.Key+"="+string(kv.Value))
		}
		if diff := cmp.Diff(got, []string{"k=" + name}); diff != "" {
			t.Errorf("store %s lists (-got +want):\n%s", name, diff)
		}
	}
}

// TestUnavailable stops the whole cluster under a store with a live watch:
// calls fail quickly with ErrUnavailable, Health says so, and once the
// cluster is back the watch delivers what was written meanwhile by another
// client and what is written after, without a gap or a repeat.
func TestUnavailable(t *testing.T) {
	c := etcdtest.Start(t, 1)
	s := open(t, c, func(o *etcd.Options) { o.RequestTimeout = 500 * time.Millisecond })
	ctx := ctxT(t)
	r1, err := store.PutKV(ctx, s, "w/1", []byte("1"))
	if err != nil {
		t.Fatal(err)
	}
	ch := s.Watch(ctx, "w/", r1)
	if u, err := s.Usage(ctx); err != nil || u.Bytes <= 0 || u.QuotaBytes <= 0 {
		t.Errorf("Usage = %+v, %v; want bytes and the quota", u, err)
	}

	c.StopAll()
	start := time.Now()
	_, err = store.PutKV(ctx, s, "w/2", []byte("2"))
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("put with etcd down: error = %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("put with etcd down took %v, want about the request timeout", d)
	}
	if _, err := s.Get(ctx, "w/1"); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Get with etcd down: error = %v, want ErrUnavailable", err)
	}
	if h := s.Health(); h.Reachable || h.Err == "" {
		t.Errorf("Health with etcd down = %+v, want unreachable with an error", h)
	}
	if _, err := s.Usage(ctx); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Usage with etcd down: error = %v, want ErrUnavailable", err)
	}

	c.RestartAll()
	other := open(t, c, func(o *etcd.Options) { o.Prefix = s.Prefix() })
	r2, err := store.PutKV(ctx, other, "w/2", []byte("2"))
	if err != nil {
		t.Fatal(err)
	}
	// s reconnects within its backoff (capped at 1 s); its request timeout
	// is short, so a write may still time out right after the restart.
	var r3 int64
	for deadline := time.Now().Add(10 * time.Second); ; {
		r3, err = store.PutKV(ctx, s, "w/3", []byte("3"))
		if err == nil {
			break
		}
		if !errors.Is(err, store.ErrUnavailable) || time.Now().After(deadline) {
			t.Fatalf("put after the restart: %v", err)
		}
	}
	// A put that timed out may still have been applied (its retry then
	// writes w/3 again): the watch must deliver r2, then every later
	// revision up to r3, each a put of w/3, with no gap or repeat.
	var got []int64
	for len(got) == 0 || got[len(got)-1] < r3 {
		select {
		case r := <-ch:
			if r.Err != nil {
				t.Fatalf("watch: %v", r.Err)
			}
			if len(got) > 0 && (len(r.Events) != 1 || r.Events[0].KV.Key != "w/3") {
				t.Errorf("watched revision %d: %+v, want one put of w/3", r.Rev, r.Events)
			}
			got = append(got, r.Rev)
		case <-ctx.Done():
			t.Fatalf("watch delivered %v, want revisions %d to %d", got, r2, r3)
		}
	}
	want := []int64{r2}
	for rev := got[0] + 1; rev <= r3 && len(got) > 1; rev++ {
		want = append(want, rev)
	}
	if diff := cmp.Diff(got, want); diff != "" || got[len(got)-1] != r3 {
		t.Errorf("watched revisions across the outage (-got +want):\n%s", diff)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !s.Health().Reachable {
		if time.Now().After(deadline) {
			t.Fatalf("Health after restart = %+v, want reachable", s.Health())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestOpenUnreachable opens a store while no member runs: Open succeeds, the
// store reports unreachable and works once a member is up.
func TestOpenUnreachable(t *testing.T) {
	c := etcdtest.Start(t, 1)
	c.StopAll()
	s := open(t, c, func(o *etcd.Options) { o.DialTimeout = 200 * time.Millisecond })
	if h := s.Health(); h.Reachable {
		t.Errorf("Health = %+v, want unreachable", h)
	}
	c.RestartAll()
	if _, err := store.PutKV(ctxT(t), s, "k", []byte("v")); err != nil {
		t.Errorf("put after the cluster came up: %v", err)
	}
}

// TestRunElectedTakeover: of two campaigners one leads; when the leader's
// process loses etcd for good (its client closes without resigning), the
// other leads within the lease, and a resigning leader hands over at once.
func TestRunElectedTakeover(t *testing.T) {
	c := etcdtest.Start(t, 3)
	// a reaches etcd through a proxy, so that it can die without a word.
	px := startProxy(t, strings.TrimPrefix(c.Endpoints()[0], "http://"))
	a := open(t, c, func(o *etcd.Options) { o.Endpoints = []string{"http://" + px.addr()} })
	same := func(o *etcd.Options) { o.Prefix = a.Prefix() }
	b, b2 := open(t, c, same), open(t, c, same)
	leader := make(chan string, 10)
	run := func(s *etcd.Store, id string) chan error {
		done := make(chan error, 1)
		go func() {
			done <- s.RunElected(context.Background(), "sweep", id, time.Second, func(ctx context.Context) {
				leader <- id
				<-ctx.Done()
			})
		}()
		return done
	}
	wantLeader := func(want string, within time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		select {
		case got := <-leader:
			if got != want {
				t.Fatalf("leader = %s, want %s", got, want)
			}
		case <-time.After(within):
			t.Fatalf("no leader within %v, want %s", within, want)
		}
		return time.Since(start)
	}
	aDone := run(a, "a")
	wantLeader("a", 5*time.Second)
	bDone := run(b, "b")
	select {
	case id := <-leader:
		t.Fatalf("%s leads while a still holds the leadership", id)
	case <-time.After(300 * time.Millisecond):
	}

	// a dies: its connections are cut; it can neither renew nor resign.
	px.cut()
	d := wantLeader("b", 5*time.Second)
	t.Logf("b took over %v after a died (lease 1s)", d)
	if d < 200*time.Millisecond {
		t.Errorf("b took over after %v, before a's lease could expire", d)
	}
	_ = a.Close()
	if err := <-aDone; err == nil {
		t.Error("RunElected of a closed store returned nil, want an error")
	}

	// A resigning leader hands over at once.
	b2Done := run(b2, "b2")
	_ = b.Close()
	<-bDone
	if d := wantLeader("b2", 5*time.Second); d > 900*time.Millisecond {
		t.Errorf("b2 took over %v after b resigned, want well under the lease", d)
	}
	_ = b2.Close()
	<-b2Done
}

// proxy forwards TCP connections to one address until cut.
type proxy struct {
	l     net.Listener
	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

func startProxy(t *testing.T, to string) *proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{l: l}
	p.wg.Go(func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", to)
			if err != nil {
				in.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, in, out)
			p.mu.Unlock()
			p.wg.Go(func() { io.Copy(out, in); out.Close() })
			p.wg.Go(func() { io.Copy(in, out); in.Close() })
		}
	})
	t.Cleanup(p.cut)
	return p
}

func (p *proxy) addr() string { return p.l.Addr().String() }

// cut closes the listener and every connection, and waits for the copies.
func (p *proxy) cut() {
	p.l.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.mu.Unlock()
	p.wg.Wait()
}

// The optional capabilities etcd implements (see storetest.Run).
var (
	_ store.Sizer              = (*etcd.Store)(nil)
	_ store.Scanner            = (*etcd.Store)(nil)
	_ store.Compactor          = (*etcd.Store)(nil)
	_ store.ProgressWatcher    = (*etcd.Store)(nil)
	_ store.Remote             = (*etcd.Store)(nil)
	_ store.SerializableGetter = (*etcd.Store)(nil)
)
