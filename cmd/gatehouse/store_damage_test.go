package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gatehouse/internal/config"
	"gatehouse/internal/node"
)

// restart starts a node again from cfg; on success it is stopped at cleanup.
func restart(t *testing.T, cfg *config.Config, newStore bool) (*node.Node, error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	n, err := node.New(ctx, cfg, node.Options{Logger: log, NewStore: newStore})
	if err != nil {
		cancel()
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return n, nil
}

// TestDamagedStoreRefusesToStart: a node whose store held a certificate
// refuses to start on a truncated or 0-byte gatehouse.db, naming the file
// and the recovery steps; --new-store starts it empty and keeps the old
// file; a fresh data directory starts normally.
func TestDamagedStoreRefusesToStart(t *testing.T) {
	tn := startTestNode(t, twoPools(t))
	tn.addCert("app.uni-a.test")
	tn.stop()
	tn.done <- nil // stopped: the cleanup's stop returns at once
	dir := tn.cfg.DataDir
	db := filepath.Join(dir, "gatehouse.db")
	if _, err := os.Stat(db + ".marker"); err != nil {
		t.Fatalf("no store marker after the first certificate: %v", err)
	}
	fi, err := os.Stat(db)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, want string
		size       int64
	}{
		{"truncated", "file is truncated", fi.Size() / 2},
		{"0 bytes", "is empty (0 bytes)", 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.Truncate(db, tt.size); err != nil {
				t.Fatal(err)
			}
			n, err := restart(t, tn.cfg, false)
			if err == nil {
				t.Fatalf("node started on a %s store file with %d certificates", tt.name, n.Certs().Count())
			}
			t.Logf("refusal:\n%v", err)
			for _, want := range []string{db, tt.want, "restore gatehouse.db", "from your latest backup", "gatehouse serve --new-store"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("refusal lacks %q:\n%v", want, err)
				}
			}
		})
	}

	// --new-store: starts empty, the old file kept aside.
	n, err := restart(t, tn.cfg, true)
	if err != nil {
		t.Fatalf("start with --new-store: %v", err)
	}
	if c := n.Certs().Count(); c != 0 {
		t.Fatalf("new store holds %d certificates", c)
	}
	if aside, _ := filepath.Glob(db + ".damaged-*"); len(aside) != 1 {
		t.Fatalf("old store file kept as %v, want one gatehouse.db.damaged-TIME", aside)
	}

	// A fresh data directory starts normally.
	fresh := *tn.cfg
	fresh.DataDir = t.TempDir()
	if _, err := restart(t, &fresh, false); err != nil {
		t.Fatalf("fresh data directory: %v", err)
	}
}

// TestDataDirWritableByOthersRefused: a node does not start on a data
// directory others can write to.
func TestDataDirWritableByOthersRefused(t *testing.T) {
	tn := startTestNode(t, twoPools(t))
	tn.stop()
	tn.done <- nil // stopped: the cleanup's stop returns at once
	if err := os.Chmod(tn.cfg.DataDir, 0o777); err != nil {
		t.Fatal(err)
	}
	_, err := restart(t, tn.cfg, false)
	if err == nil || !strings.Contains(err.Error(), tn.cfg.DataDir) || !strings.Contains(err.Error(), "chmod 700") {
		t.Fatalf("start on a world-writable data directory: %v; want a refusal naming it", err)
	}
	os.Chmod(tn.cfg.DataDir, 0o700)
	if _, err := restart(t, tn.cfg, false); err != nil {
		t.Fatalf("start after chmod 700: %v", err)
	}
}
