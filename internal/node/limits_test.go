package node

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"

	"gatehouse/internal/capacity"
	"gatehouse/internal/config"
)

// loadConfig is a configuration in dir with every listener on a loopback
// port and tail appended.
func loadConfig(t *testing.T, dir, tail string) *config.Config {
	t.Helper()
	var doc strings.Builder
	fmt.Fprintf(&doc, "data_dir: %s\nlisteners:\n", dir)
	for _, l := range []string{"https", "http", "status", "admin"} {
		fmt.Fprintf(&doc, "  %s: {address: \"127.0.0.1:0\"}\n", l)
	}
	doc.WriteString(tail)
	cfg, err := config.Parse(strings.NewReader(doc.String()))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg
}

// startNode starts a node from cfg in this process; it is shut down at
// cleanup.
func startNode(t *testing.T, cfg *config.Config) *Node {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	n, err := New(ctx, cfg, Options{Logger: log})
	if err != nil {
		cancel()
		t.Fatalf("New: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return n
}

func limitOf(n *Node, name string) int64 {
	for _, r := range n.Capacity().Snapshot() {
		if r.Name == name {
			return r.Limit
		}
	}
	return -1
}

// TestRestartOnlyLimitRefusesReload checks the refusal of a reload that
// changes a limit listed as needing a restart: the answer names the field
// and why, and nothing of the new configuration is in force. (No limit is
// listed today; the test lists one for its duration.)
func TestRestartOnlyLimitRefusesReload(t *testing.T) {
	saved := restartOnly
	t.Cleanup(func() { restartOnly = saved })
	restartOnly = append(restartOnly, struct {
		field, why string
		get        func(*config.Config) any
	}{"limits.max_routes", "a test says so", func(c *config.Config) any { return c.Limits.MaxRoutes }})

	dir := t.TempDir()
	n := startNode(t, loadConfig(t, dir, "limits: {max_certificates: 3, max_routes: 3}\n"))
	err := n.Reload(loadConfig(t, dir, "limits: {max_certificates: 9, max_routes: 4}\n"))
	if err == nil || !strings.Contains(err.Error(), "limits.max_routes: changing it from 3 to 4 needs a restart (a test says so)") {
		t.Fatalf("reload changing a restart-only limit: %v, want a refusal naming it", err)
	}
	if c, r := limitOf(n, capacity.Certificates), limitOf(n, capacity.Routes); c != 3 || r != 3 {
		t.Errorf("after the refused reload: certificates limit %d, routes limit %d; want 3 and 3 (nothing applied)", c, r)
	}
	// An allowed change applies.
	if err := n.Reload(loadConfig(t, dir, "limits: {max_certificates: 9, max_routes: 3}\n")); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if c := limitOf(n, capacity.Certificates); c != 9 {
		t.Errorf("after reload: certificates limit %d, want 9", c)
	}
}
