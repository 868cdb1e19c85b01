package bolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"gatehouse/internal/leakcheck"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"gatehouse/internal/store"
	"gatehouse/internal/store/storetest"
)

var _ storetest.Compactor = (*Store)(nil)

func TestMain(m *testing.M) {
	leakcheck.Main(m, "internal/store/bolt.(*Store)")
}

func openT(t testing.TB, path string, opts Options) *Store {
	t.Helper()
	s, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return openT(t, filepath.Join(t.TempDir(), "store.db"), Options{})
	})
}

func TestReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "store.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.PutKV(ctx, s, "a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	rev, err := s.Txn(ctx, nil, []store.Op{store.Put("b", []byte("2")), store.Put("c", []byte("3"))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.DeleteKey(ctx, s, "a"); err != nil {
		t.Fatal(err)
	}
	last, _ := s.Rev(ctx)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fi.Mode().Perm(), os.FileMode(0o600); got != want {
		t.Errorf("file mode = %v, want %v", got, want)
	}

	s = openT(t, path, Options{})
	if got, _ := s.Rev(ctx); got != last {
		t.Errorf("Rev after reopen = %d, want %d", got, last)
	}
	kv, err := s.Get(ctx, "c")
	if err != nil || string(kv.Value) != "3" || kv.ModRev != rev {
		t.Errorf("Get(c) after reopen = %+v, %v; want value 3 at rev %d", kv, err, rev)
	}
	if _, err := s.Get(ctx, "a"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get(a) after reopen: %v, want ErrNotFound", err)
	}
	u, err := s.Usage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if u.Keys != 2 || u.Bytes <= 0 {
		t.Errorf("Usage = %+v, want 2 keys and a size", u)
	}
	// The history survives too: replay from before the reopen.
	ch := s.Watch(ctx, "", rev-1)
	for _, want := range []int64{rev, last} {
		select {
		case r := <-ch:
			if r.Err != nil || r.Rev != want {
				t.Errorf("replay after reopen: rev %d err %v, want rev %d", r.Rev, r.Err, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no replay after reopen")
		}
	}
	next, err := store.PutKV(ctx, s, "d", []byte("4"))
	if err != nil || next != last+1 {
		t.Errorf("first write after reopen: rev %d, %v; want %d", next, err, last+1)
	}
}

// writeStore creates a store file with some data and returns its path.
func writeStore(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "store.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		if _, err := store.PutKV(context.Background(), s, fmt.Sprintf("k/%04d", i), bytes.Repeat([]byte("v"), 500)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCorruption(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, path string)
		want    string // in the error, besides the path
		corrupt bool   // wraps ErrCorrupt
	}{
		{
			name: "truncated to half",
			prepare: func(t *testing.T, path string) {
				writeStoreAt(t, path)
				fi, _ := os.Stat(path)
				if err := os.Truncate(path, fi.Size()/2); err != nil {
					t.Fatal(err)
				}
			},
			want:    "truncated",
			corrupt: true,
		},
		{
			name: "truncated inside the header",
			prepare: func(t *testing.T, path string) {
				writeStoreAt(t, path)
				if err := os.Truncate(path, 100); err != nil {
					t.Fatal(err)
				}
			},
			want: "store file",
		},
		{
			name: "garbage",
			prepare: func(t *testing.T, path string) {
				b := make([]byte, 64<<10)
				for i := range b {
					b[i] = byte(i*7 + i/251)
				}
				if err := os.WriteFile(path, b, 0o600); err != nil {
					t.Fatal(err)
				}
			},
			want:    "not a valid store file",
			corrupt: true,
		},
		{
			name: "text file",
			prepare: func(t *testing.T, path string) {
				if err := os.WriteFile(path, []byte("listeners:\n  - addr: :443\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			},
			want: "store file",
		},
		{
			name: "bolt file of another program",
			prepare: func(t *testing.T, path string) {
				db, err := bbolt.Open(path, 0o600, nil)
				if err != nil {
					t.Fatal(err)
				}
				err = db.Update(func(tx *bbolt.Tx) error {
					b, err := tx.CreateBucket([]byte("widgets"))
					if err != nil {
						return err
					}
					return b.Put([]byte("x"), []byte("y"))
				})
				if err != nil {
					t.Fatal(err)
				}
				db.Close()
			},
			want:    `not a gatehouse store (it holds buckets widgets)`,
			corrupt: true,
		},
		{
			name: "newer format",
			prepare: func(t *testing.T, path string) {
				writeStoreAt(t, path)
				db, err := bbolt.Open(path, 0o600, nil)
				if err != nil {
					t.Fatal(err)
				}
				err = db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketMeta).Put(metaFormat, u64(7)) })
				if err != nil {
					t.Fatal(err)
				}
				db.Close()
			},
			want: "store format version 7, this build reads version 1",
		},
		{
			name: "overwritten data pages",
			prepare: func(t *testing.T, path string) {
				writeStoreAt(t, path)
				f, err := os.OpenFile(path, os.O_RDWR, 0)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				// Pages 2.. hold the freelist, buckets and data; smash a run of them.
				junk := bytes.Repeat([]byte{0xA5}, 8*4096)
				if _, err := f.WriteAt(junk, 2*4096); err != nil {
					t.Fatal(err)
				}
			},
			want:    "store file",
			corrupt: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "store.db")
			tc.prepare(t, path)
			s, err := Open(path, Options{OpenTimeout: 100 * time.Millisecond})
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded, want an error")
			}
			t.Logf("Open: %v", err)
			msg := err.Error()
			if !strings.Contains(msg, path) || !strings.Contains(msg, tc.want) {
				t.Errorf("Open error = %q, want it to name %s and say %q", msg, path, tc.want)
			}
			if tc.corrupt && !errors.Is(err, ErrCorrupt) {
				t.Errorf("Open error = %v, want it to wrap ErrCorrupt", err)
			}
			// The file is not left locked by the failed open.
			if errors.Is(err, ErrLocked) {
				t.Errorf("Open error = %v: the file was left locked", err)
			}
		})
	}
}

func writeStoreAt(t *testing.T, path string) {
	t.Helper()
	src := writeStore(t, t.TempDir())
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestLockTimeout(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.db")
	first := openT(t, path, Options{})
	start := time.Now()
	s, err := Open(path, Options{OpenTimeout: 100 * time.Millisecond})
	if err == nil {
		s.Close()
		t.Fatal("second Open succeeded, want a lock error")
	}
	if want := "store file " + path + " is locked by another process"; !strings.Contains(err.Error(), want) || !errors.Is(err, ErrLocked) {
		t.Errorf("second Open error = %q, want it to contain %q and wrap ErrLocked", err, want)
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("second Open gave up after %v, want at least the 100ms timeout", d)
	}
	// After the first closes, a new open succeeds.
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	openT(t, path, Options{OpenTimeout: 100 * time.Millisecond})
}

func TestQuota(t *testing.T) {
	ctx := context.Background()
	const quota = 1 << 20
	path := filepath.Join(t.TempDir(), "store.db")
	s := openT(t, path, Options{QuotaBytes: quota, EventRetention: 1})
	value := bytes.Repeat([]byte("q"), 8<<10)
	var (
		tooLarge error
		stored   int
	)
	for i := range 1000 {
		_, err := store.PutKV(ctx, s, fmt.Sprintf("q/%04d", i), value)
		if err != nil {
			tooLarge = err
			break
		}
		stored++
	}
	if !errors.Is(tooLarge, store.ErrTooLarge) {
		t.Fatalf("writing past the quota: error = %v, want ErrTooLarge (stored %d values)", tooLarge, stored)
	}
	for _, want := range []string{path, "quota of 1048576 bytes", "it is "} {
		if !strings.Contains(tooLarge.Error(), want) {
			t.Errorf("quota error %q does not mention %q", tooLarge, want)
		}
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > quota {
		t.Errorf("file is %d bytes, over the quota of %d", fi.Size(), quota)
	}
	if stored < 50 {
		t.Errorf("only %d values of 8 KiB fit in a 1 MiB quota", stored)
	}
	// The refused write changed nothing; the store keeps working.
	rev, _ := s.Rev(ctx)
	if rev != int64(stored) {
		t.Errorf("Rev = %d, want %d", rev, stored)
	}
	if _, err := s.Get(ctx, fmt.Sprintf("q/%04d", stored)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the refused key: Get error = %v, want ErrNotFound", err)
	}
	for i := range 20 {
		if _, err := store.DeleteKey(ctx, s, fmt.Sprintf("q/%04d", i)); err != nil {
			t.Fatalf("delete under a full quota: %v", err)
		}
	}
	// Freed pages are reused.
	for i := range 5 {
		if _, err := store.PutKV(ctx, s, fmt.Sprintf("q/%04d", i), value); err != nil {
			t.Fatalf("write after deleting: %v", err)
		}
	}
	u, err := s.Usage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if u.QuotaBytes != quota || u.Bytes > quota || u.Keys != int64(stored-15) {
		t.Errorf("Usage = %+v, want quota %d, bytes <= quota, %d keys", u, quota, stored-15)
	}
}

// TestQuotaBatch checks that in a group commit only the write that does not
// fit fails.
func TestQuotaBatch(t *testing.T) {
	ctx := context.Background()
	s := openT(t, filepath.Join(t.TempDir(), "store.db"), Options{QuotaBytes: 1 << 20, EventRetention: 1})
	var wg sync.WaitGroup
	var ok, refused atomic.Int64
	errs := make(chan error, 20)
	for i := range 16 {
		wg.Go(func() {
			v := make([]byte, 1<<10)
			if i == 0 {
				v = make([]byte, 2<<20)
			}
			if _, err := store.PutKV(ctx, s, fmt.Sprintf("b/%d", i), v); err != nil {
				if !errors.Is(err, store.ErrTooLarge) {
					errs <- err
				}
				refused.Add(1)
				return
			}
			ok.Add(1)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if ok.Load() != 15 || refused.Load() != 1 {
		t.Errorf("%d writes succeeded and %d were refused, want 15 and 1", ok.Load(), refused.Load())
	}
}

func TestRetention(t *testing.T) {
	ctx := context.Background()
	s := openT(t, filepath.Join(t.TempDir(), "store.db"), Options{EventRetention: 3})
	var revs []int64
	for i := range 10 {
		rev, err := store.PutKV(ctx, s, fmt.Sprintf("r/%d", i), []byte("v"))
		if err != nil {
			t.Fatal(err)
		}
		revs = append(revs, rev)
	}
	tests := []struct {
		from      int64
		compacted bool
		want      []int64
	}{
		{revs[5], true, nil},
		{revs[6], false, revs[7:]},
		{revs[8], false, revs[9:]},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.from), func(t *testing.T) {
			wctx, cancel := context.WithCancel(ctx)
			defer cancel()
			ch := s.Watch(wctx, "r/", tc.from)
			if tc.compacted {
				r := <-ch
				if !errors.Is(r.Err, store.ErrCompacted) {
					t.Errorf("watch from %d: %+v, want ErrCompacted", tc.from, r)
				}
				if _, ok := <-ch; ok {
					t.Error("channel not closed after ErrCompacted")
				}
				return
			}
			for _, want := range tc.want {
				if r := <-ch; r.Err != nil || r.Rev != want {
					t.Errorf("watch from %d: rev %d err %v, want rev %d", tc.from, r.Rev, r.Err, want)
				}
			}
		})
	}
	if err := s.Compact(ctx, revs[9]+1); err == nil {
		t.Error("Compact to a future revision succeeded, want an error")
	}
}

// syncBuffer is a concurrency-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestWatchOverflow(t *testing.T) {
	ctx := context.Background()
	var logs syncBuffer
	s := openT(t, filepath.Join(t.TempDir(), "store.db"), Options{
		WatchQueue: 4,
		Logger:     slog.New(slog.NewTextHandler(&logs, nil)),
	})
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	slow := s.Watch(wctx, "o/", 0)
	fast := s.Watch(wctx, "o/", 0)
	// The fast watcher reports each response, and the writer waits for
	// it before the next write, so that it never falls behind however the
	// goroutines are scheduled (a loaded machine).
	fastSeen := make(chan error, 1)
	go func() {
		defer close(fastSeen)
		for r := range fast {
			fastSeen <- r.Err
		}
	}()
	// Writers never block on the slow watcher, which does not read.
	for i := range 50 {
		if _, err := store.PutKV(ctx, s, fmt.Sprintf("o/%d", i), []byte("v")); err != nil {
			t.Fatal(err)
		}
		select {
		case err, ok := <-fastSeen:
			if !ok || err != nil {
				t.Fatalf("fast watcher after write %d: ended (%v) or failed: %v", i, !ok, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("fast watcher got no response for write %d", i)
		}
	}
	var got []store.WatchResponse
	for r := range slow {
		got = append(got, r)
	}
	if len(got) == 0 || !errors.Is(got[len(got)-1].Err, store.ErrCompacted) {
		t.Fatalf("slow watcher got %d responses, last %+v; want it to end with ErrCompacted", len(got), got[len(got)-1:])
	}
	if len(got) > 6 {
		t.Errorf("slow watcher got %d responses, want at most the queue (4) and the one in flight plus the error", len(got))
	}
	if n := strings.Count(logs.String(), "watch consumer too slow"); n != 1 {
		t.Errorf("overflow logged %d times, want once:\n%s", n, logs.String())
	}
}

func TestCloseWaitsForWatchReplay(t *testing.T) {
	ctx := context.Background()
	s, err := Open(filepath.Join(t.TempDir(), "store.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 600 {
		if _, err := store.PutKV(ctx, s, fmt.Sprintf("c/%d", i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	// Replays of several chunks, never read, then Close.
	for range 3 {
		s.Watch(ctx, "c/", 1)
	}
	done := make(chan error, 1)
	go func() { done <- s.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close blocked on unread watches")
	}
}

func TestListSeek(t *testing.T) {
	// Paging with startAfter positions the cursor directly: a page deep in a
	// large keyspace costs what the first page costs.
	ctx := context.Background()
	s := openT(t, filepath.Join(t.TempDir(), "store.db"), Options{})
	ops := make([]store.Op, 0, 20000)
	for i := range 20000 {
		ops = append(ops, store.Put(fmt.Sprintf("s/%06d", i), []byte("v")))
	}
	if _, err := s.Txn(ctx, nil, ops); err != nil {
		t.Fatal(err)
	}
	kvs, _, err := s.List(ctx, "s/", "s/019990", 5)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(kvs); got != 5 || kvs[0].Key != "s/019991" {
		t.Errorf("deep page = %v, want 5 keys from s/019991", keysOf(kvs))
	}
}

func keysOf(kvs []store.KV) []string {
	var out []string
	for _, kv := range kvs {
		out = append(out, kv.Key)
	}
	return out
}

// BenchmarkTxnParallel measures puts of 2 KiB values, each its own
// transaction (as a bulk certificate import does), from 1, 8 and 64
// concurrent writers. The 8-writer case is the reference number.
func BenchmarkTxnParallel(b *testing.B) {
	for _, writers := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			ctx := context.Background()
			s := openT(b, filepath.Join(b.TempDir(), "store.db"), Options{})
			value := bytes.Repeat([]byte("c"), 2<<10)
			var n atomic.Int64
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for range writers {
				wg.Go(func() {
					for {
						i := n.Add(1)
						if i > int64(b.N) {
							return
						}
						if _, err := store.PutKV(ctx, s, fmt.Sprintf("certs/%010d", i), value); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "writes/s")
		})
	}
}

func TestRetentionBytes(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "store.db")
	// Each revision's events take a little over 100 bytes: keep about three.
	s := openT(t, path, Options{EventRetentionBytes: 350})
	var revs []int64
	for i := range 10 {
		rev, err := store.PutKV(ctx, s, fmt.Sprintf("r/%d", i), bytes.Repeat([]byte("v"), 100))
		if err != nil {
			t.Fatal(err)
		}
		revs = append(revs, rev)
	}
	tests := []struct {
		from      int64
		compacted bool
		want      []int64
	}{
		{revs[5], true, nil},
		{revs[6], false, revs[7:]},
		{revs[8], false, revs[9:]},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.from), func(t *testing.T) {
			wctx, cancel := context.WithCancel(ctx)
			defer cancel()
			ch := s.Watch(wctx, "r/", tc.from)
			if tc.compacted {
				if r := <-ch; !errors.Is(r.Err, store.ErrCompacted) {
					t.Errorf("watch from %d: %+v, want ErrCompacted", tc.from, r)
				}
				return
			}
			for _, want := range tc.want {
				if r := <-ch; r.Err != nil || r.Rev != want {
					t.Errorf("watch from %d: rev %d err %v, want rev %d", tc.from, r.Rev, r.Err, want)
				}
			}
		})
	}
	// The values themselves are all there.
	kvs, _, err := s.List(ctx, "r/", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(kvs), 10; got != want {
		t.Errorf("List returned %d keys, want %d", got, want)
	}
}

func TestCheckMaxBytes(t *testing.T) {
	// A file above the bound is opened after the header, size and format
	// checks only, and the log says so.
	tests := []struct {
		name     string
		maxBytes int64
		wantSkip bool
	}{
		{"default bound", 0, false},
		{"above the bound", 1, true},
		{"no bound", -1, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "store.db")
			writeStoreAt(t, path)
			var logs syncBuffer
			s, err := Open(path, Options{CheckMaxBytes: tc.maxBytes, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			s.Close()
			if got := strings.Contains(logs.String(), "structure check bound"); got != tc.wantSkip {
				t.Errorf("log mentions the skipped check: %v, want %v; log:\n%s", got, tc.wantSkip, logs.String())
			}
		})
	}
}

func TestScan(t *testing.T) {
	ctx := context.Background()
	s := openT(t, filepath.Join(t.TempDir(), "store.db"), Options{})
	// More keys than one read transaction takes, around another prefix.
	n := scanChunk + 5
	ops := make([]store.Op, 0, n+2)
	for i := range n {
		ops = append(ops, store.Put(fmt.Sprintf("s/%06d", i), []byte(fmt.Sprint(i))))
	}
	ops = append(ops, store.Put("r/x", []byte("r")), store.Put("t/x", []byte("t")))
	rev, err := s.Txn(ctx, nil, ops)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	gotRev, err := s.Scan(ctx, "s/", func(k, v []byte) error {
		if want := fmt.Sprint(len(got)); string(v) != want {
			return fmt.Errorf("value of %s = %q, want %q", k, v, want)
		}
		got = append(got, string(k))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if gotRev != rev {
		t.Errorf("Scan revision = %d, want %d", gotRev, rev)
	}
	if len(got) != n || got[0] != "s/000000" || got[n-1] != fmt.Sprintf("s/%06d", n-1) {
		t.Errorf("Scan saw %d keys (%q ... %q), want %d", len(got), got[0], got[len(got)-1], n)
	}
	stop := errors.New("stop")
	calls := 0
	if _, err := s.Scan(ctx, "s/", func(k, v []byte) error { calls++; return stop }); !errors.Is(err, stop) || calls != 1 {
		t.Errorf("Scan with a failing fn: err %v after %d calls, want %v after 1", err, calls, stop)
	}
}

// The optional capabilities bolt implements (see storetest.Run).
var (
	_ store.Sizer     = (*Store)(nil)
	_ store.Scanner   = (*Store)(nil)
	_ store.Compactor = (*Store)(nil)
)

// TestSetQuota lowers the quota of an open store below its size (writes
// that grow the file are refused, nothing is removed) and raises it again
// (they are accepted).
func TestSetQuota(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "q.db"), Options{QuotaBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	val := make([]byte, 64<<10)
	put := func(i int) error {
		_, err := s.Txn(ctx, nil, []store.Op{store.Put(fmt.Sprintf("k/%04d", i), val)})
		return err
	}
	i := 0
	for ; ; i++ {
		if err := put(i); err != nil {
			if !errors.Is(err, store.ErrTooLarge) {
				t.Fatal(err)
			}
			break
		}
	}
	if err := s.SetQuota(4 << 20); err != nil {
		t.Fatal(err)
	}
	if err := put(i); err != nil {
		t.Fatalf("after raising the quota: %v", err)
	}
	if u, _ := s.Usage(ctx); u.QuotaBytes != 4<<20 {
		t.Errorf("Usage quota = %d, want 4MiB", u.QuotaBytes)
	}
	if err := s.SetQuota(512 << 10); err != nil {
		t.Fatal(err)
	}
	for j := i + 1; j < i+40; j++ {
		if err := put(j); err != nil {
			if !errors.Is(err, store.ErrTooLarge) {
				t.Fatal(err)
			}
			kvs, _, _ := s.List(ctx, "k/", "", 0)
			if len(kvs) != j {
				t.Fatalf("%d keys after the refusal, want %d: nothing removed", len(kvs), j)
			}
			return
		}
	}
	t.Fatal("a quota below the file's size refused nothing")
}
