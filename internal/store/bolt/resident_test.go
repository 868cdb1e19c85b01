package bolt

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"gatehouse/internal/store"
)

// rssFileKiB reads this process's resident file-backed memory.
func rssFileKiB(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip("no /proc/self/status")
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "RssFile:" {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	t.Skip("no RssFile in /proc/self/status")
	return 0
}

func TestReleaseMapped(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "s.db"), Options{ReleaseMappedEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	val := []byte(strings.Repeat("x", 3000))
	var ops []store.Op
	for i := range 8000 { // about 24 MB of values
		ops = append(ops, store.Put(fmt.Sprintf("k/%05d", i), val))
		if len(ops) == 500 {
			if _, err := s.Txn(ctx, nil, ops); err != nil {
				t.Fatal(err)
			}
			ops = nil
		}
	}
	// Read everything so the file's pages are mapped.
	kvs, _, err := s.List(ctx, "k/", "", 0)
	if err != nil || len(kvs) != 8000 {
		t.Fatalf("list: %d, %v", len(kvs), err)
	}
	before := rssFileKiB(t)
	if err := s.ReleaseMapped(); err != nil {
		t.Fatal(err)
	}
	after := rssFileKiB(t)
	if before-after < 16<<10 {
		t.Fatalf("RssFile %d KiB before, %d KiB after release; want at least 16 MiB less", before, after)
	}
	// Reads still see the data.
	kv, err := s.Get(ctx, "k/07999")
	if err != nil || len(kv.Value) != 3000 {
		t.Fatalf("get after release: %d bytes, %v", len(kv.Value), err)
	}
}
