package capacity

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestAdmit(t *testing.T) {
	var buf bytes.Buffer
	r := New(Options{Logger: slog.New(slog.NewTextHandler(&buf, nil)), Settings: Settings{Limits: map[string]int64{"certificates": 5000}}})
	r.Register("certificates", "count", "limits.max_certificates", true, func() (int64, int64) { return 4990, 0 })
	r.Register("file_descriptors", "count", "RLIMIT_NOFILE", false, func() (int64, int64) { return 19999, 20000 })
	ctx := context.Background()
	if err := r.Admit(ctx, "certificates", 4990, 10); err != nil {
		t.Fatalf("admitting up to the limit: %v", err)
	}
	if buf.Len() != 0 {
		t.Errorf("an admission logged %q", buf.String())
	}
	ctx = WithCaller(ctx, Caller{Remote: "192.0.2.7:4711", Identity: "admin token sha256:0011", RequestID: "req-42"})
	err := r.Admit(ctx, "certificates", 4990, 11)
	var le *LimitError
	if !errors.As(err, &le) {
		t.Fatalf("Admit over the limit: %v, want *LimitError", err)
	}
	want := "certificates limit reached: 4990 of 5000 in use; adding 11 would exceed the limit (limits.max_certificates) by 1"
	if err.Error() != want {
		t.Fatalf("message:\n got %q\nwant %q", err.Error(), want)
	}
	for _, w := range []string{"change refused: limit reached", "resource=certificates", "usage=4990", "limit=5000", "adding=11", "remote=192.0.2.7:4711", `identity="admin token sha256:0011"`, "request_id=req-42"} {
		if !strings.Contains(buf.String(), w) {
			t.Errorf("refusal log %q lacks %q", buf.String(), w)
		}
	}
	if got := r.Refused("certificates"); got != 1 {
		t.Errorf("Refused = %d, want 1", got)
	}
	if err := r.Admit(ctx, "file_descriptors", 19999, 100); err != nil {
		t.Fatalf("soft resource refused: %v", err)
	}
	if err := r.Admit(ctx, "unknown", 1, 1); err != nil {
		t.Fatalf("unknown resource refused: %v", err)
	}
	// A raised limit admits the next request; a lowered one refuses it.
	r.Configure(Settings{Limits: map[string]int64{"certificates": 6000}})
	if err := r.Admit(ctx, "certificates", 4990, 11); err != nil {
		t.Fatalf("after raising the limit: %v", err)
	}
	buf.Reset()
	r.Configure(Settings{Limits: map[string]int64{"certificates": 100}})
	if !strings.Contains(buf.String(), "limit set below usage") || !strings.Contains(buf.String(), "usage=4990") {
		t.Errorf("lowering the limit below usage logged %q", buf.String())
	}
	if err := r.Admit(ctx, "certificates", 4990, 1); !errors.As(err, &le) || le.Limit != 100 {
		t.Fatalf("after lowering the limit: %v", err)
	}
	if err := r.Admit(ctx, "certificates", 4990, 0); err != nil {
		t.Fatalf("a change adding nothing (a removal) is refused: %v", err)
	}
}

func TestStoreLimitIsTheLowerOfBoth(t *testing.T) {
	r := New(Options{Settings: Settings{Limits: map[string]int64{Store: 10 << 20}}})
	quota := int64(8 << 20)
	r.Register(Store, "bytes", "limits.store_quota", true, func() (int64, int64) { return 7 << 20, quota })
	if got := r.Limit(Store); got != 8<<20 {
		t.Errorf("limit = %d, want the store's own 8MiB", got)
	}
	quota = 0
	if got := r.Limit(Store); got != 10<<20 {
		t.Errorf("limit = %d, want the configured 10MiB", got)
	}
	err := r.Admit(context.Background(), Store, 9<<20, 2<<20)
	var le *LimitError
	if !errors.As(err, &le) || !le.Storage() {
		t.Fatalf("store admission: %v", err)
	}
	if want := "store limit reached: 9.0 MiB of 10.0 MiB in use; adding about 2.0 MiB would exceed the limit (limits.store_quota) by about 1.0 MiB"; err.Error() != want {
		t.Errorf("message:\n got %q\nwant %q", err.Error(), want)
	}
}

func TestRecordCrossesBothLevelsInOrder(t *testing.T) {
	var buf bytes.Buffer
	r := New(Options{Logger: slog.New(slog.NewTextHandler(&buf, nil)), Settings: Settings{Limits: map[string]int64{"routes": 100}}})
	r.Register("routes", "count", "limits.max_routes", true, func() (int64, int64) { return 0, 0 })
	r.Record("routes", 50)
	if buf.Len() != 0 {
		t.Fatalf("below warning logged %q", buf.String())
	}
	r.Record("routes", 97) // one batch past both levels
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "resource above warning level") || !strings.Contains(lines[1], "resource near its limit") {
		t.Fatalf("crossing both levels logged:\n%s", buf.String())
	}
	for _, l := range lines {
		for _, w := range []string{"usage=97", "limit=100", "percent=97"} {
			if !strings.Contains(l, w) {
				t.Errorf("line %q lacks %q", l, w)
			}
		}
	}
	buf.Reset()
	r.Record("routes", 98)
	r.Check() // the probe reads 0 routes now
	if !strings.Contains(buf.String(), "back below warning level") {
		t.Errorf("falling back logged %q", buf.String())
	}
}

func TestRefusalsOfTheLastDay(t *testing.T) {
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	r := New(Options{Now: func() time.Time { return now }, Settings: Settings{Limits: map[string]int64{"routes": 1}}})
	r.Register("routes", "count", "limits.max_routes", true, func() (int64, int64) { return 1, 0 })
	ctx := context.Background()
	for range 3 {
		_ = r.Admit(ctx, "routes", 1, 1)
	}
	now = now.Add(23 * time.Hour)
	_ = r.Admit(ctx, "routes", 1, 1)
	if got := r.Snapshot()[0].Refused24h; got != 4 {
		t.Errorf("refused in 24h = %d, want 4", got)
	}
	now = now.Add(2 * time.Hour) // the first three are older than a day
	if got := r.Snapshot()[0].Refused24h; got != 1 {
		t.Errorf("refused in 24h = %d, want 1", got)
	}
	if got := r.Refused("routes"); got != 4 {
		t.Errorf("refused total = %d, want 4", got)
	}
}

func TestSnapshotAndLevels(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	r := New(Options{Logger: log})
	var used atomic.Int64
	r.Register("cache_bytes", "bytes", "tls.cache_bytes", false, func() (int64, int64) { return used.Load(), 1000 })
	r.Register("heap", "bytes", "", false, func() (int64, int64) { return 5, 0 })

	steps := []struct {
		usage     int64
		wantLevel string
		wantLog   string // substring of the new log line, "" for none
	}{
		{100, LevelOK, ""},
		{800, LevelWarning, "resource above warning level"},
		{850, LevelWarning, ""}, // logged once, not again
		{960, LevelCritical, "resource near its limit"},
		{970, LevelCritical, ""},
		{100, LevelOK, "resource back below warning level"},
	}
	for i, st := range steps {
		used.Store(st.usage)
		before := buf.Len()
		r.Check()
		logged := buf.String()[before:]
		snap := r.Snapshot()
		if snap[0].Name != "cache_bytes" || snap[0].Level != st.wantLevel {
			t.Fatalf("step %d: snapshot %+v, want level %s", i, snap[0], st.wantLevel)
		}
		if st.wantLog == "" && logged != "" {
			t.Errorf("step %d: unexpected log %q", i, logged)
		}
		if st.wantLog != "" && !strings.Contains(logged, st.wantLog) {
			t.Errorf("step %d: log %q, want %q", i, logged, st.wantLog)
		}
	}
	if got := r.Snapshot()[1]; got.Percent != -1 || got.Level != LevelOK {
		t.Errorf("resource without limit: %+v", got)
	}
}

func TestCollector(t *testing.T) {
	r := New(Options{})
	r.Register("certificates", "count", "", true, func() (int64, int64) { return 3, 10 })
	_ = r.Admit(context.Background(), "certificates", 10, 1)
	got := testutil.CollectAndCount(NewCollector(r))
	if got != 4 {
		t.Fatalf("collected %d metrics, want 4 (usage, limit, ratio, refused)", got)
	}
	wantRefused := `# HELP gatehouse_admission_refused_total Changes refused because they would cross a hard limit.
# TYPE gatehouse_admission_refused_total counter
gatehouse_admission_refused_total{resource="certificates"} 1
`
	if err := testutil.CollectAndCompare(NewCollector(r), strings.NewReader(wantRefused), "gatehouse_admission_refused_total"); err != nil {
		t.Fatal(err)
	}
	want := `# HELP gatehouse_resource_usage Current usage of a finite resource.
# TYPE gatehouse_resource_usage gauge
gatehouse_resource_usage{resource="certificates",unit="count"} 3
`
	if err := testutil.CollectAndCompare(NewCollector(r), strings.NewReader(want), "gatehouse_resource_usage"); err != nil {
		t.Fatal(err)
	}
}

func TestSystemProbes(t *testing.T) {
	if u, l := OpenFiles(); u <= 0 || l <= 0 || u > l {
		t.Errorf("OpenFiles = %d, %d", u, l)
	}
	if u, l := Memory(); u <= 0 || l <= 0 || u > l {
		t.Errorf("Memory = %d, %d", u, l)
	}
}

// TestRunFollowsCheckInterval checks that Run checks every
// Settings.CheckInterval and picks up a new one from Configure at once.
func TestRunFollowsCheckInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := New(Options{Settings: Settings{CheckInterval: time.Hour}})
		var probes atomic.Int64
		r.Register("memory", "bytes", "", false, func() (int64, int64) { probes.Add(1); return 1, 10 })
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); r.Run(ctx) }()
		synctest.Wait()
		if got := probes.Load(); got != 1 {
			t.Fatalf("checks at start = %d, want 1", got)
		}
		time.Sleep(30 * time.Minute)
		synctest.Wait()
		if got := probes.Load(); got != 1 {
			t.Fatalf("checks after 30m of a 1h period = %d, want 1", got)
		}
		r.Configure(Settings{CheckInterval: time.Minute}) // Configure checks once itself
		synctest.Wait()
		before := probes.Load()
		time.Sleep(5*time.Minute + time.Second)
		synctest.Wait()
		if got := probes.Load() - before; got != 5 {
			t.Errorf("checks in 5m of a 1m period = %d, want 5", got)
		}
		cancel()
		<-done
	})
}
