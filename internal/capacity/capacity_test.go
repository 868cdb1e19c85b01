package capacity

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestAdmit(t *testing.T) {
	r := New(Options{})
	var used atomic.Int64
	used.Store(4990)
	r.Register("certificates", "count", "limits.max_certificates", true, func() (int64, int64) { return used.Load(), 5000 })
	r.Register("file_descriptors", "count", "RLIMIT_NOFILE", false, func() (int64, int64) { return 19999, 20000 })
	if err := r.Admit("certificates", 10); err != nil {
		t.Fatalf("admitting up to the limit: %v", err)
	}
	err := r.Admit("certificates", 11)
	var le *LimitError
	if !errors.As(err, &le) {
		t.Fatalf("Admit over the limit: %v, want *LimitError", err)
	}
	want := "certificates limit reached: 4990 of 5000 in use; adding 11 would exceed the limit (limits.max_certificates) by 1"
	if err.Error() != want {
		t.Fatalf("message:\n got %q\nwant %q", err.Error(), want)
	}
	if err := r.Admit("file_descriptors", 100); err != nil {
		t.Fatalf("soft resource refused: %v", err)
	}
	if err := r.Admit("unknown", 1); err != nil {
		t.Fatalf("unknown resource refused: %v", err)
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
	got := testutil.CollectAndCount(NewCollector(r))
	if got != 3 {
		t.Fatalf("collected %d metrics, want 3 (usage, limit, ratio)", got)
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
