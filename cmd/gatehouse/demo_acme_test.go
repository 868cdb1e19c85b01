package main

import (
	"bufio"
	"context"
	"io"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"gatehouse/internal/demo"
)

// TestDemoACME runs gatehouse demo --acme and pastes the curl command it
// prints for the ACME-issued hostname, as a newcomer would.
func TestDemoACME(t *testing.T) {
	requireTool(t, "curl")
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- runDemoWith(ctx, t.TempDir(), demo.Addrs{HTTPS: "127.0.0.1:0", Status: "127.0.0.1:0", Admin: "127.0.0.1:0"}, pw, true)
		pw.Close()
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("demo exited with %v", err)
		}
	}()
	var states []string
	var curl string
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if s, ok := strings.CutPrefix(line, demoACMEHost+": "); ok {
			states = append(states, strings.SplitN(s, " ", 2)[0])
		}
		if strings.HasPrefix(line, "curl ") && strings.HasSuffix(line, "# ACME-issued") {
			curl, _, _ = strings.Cut(line, "#")
		}
		if strings.HasPrefix(line, "Press Ctrl-C") {
			break
		}
	}
	go io.Copy(io.Discard, pr)
	if len(states) == 0 || !strings.HasPrefix(states[len(states)-1], "active") {
		t.Fatalf("states printed: %q, want ending in active", states)
	}
	if curl == "" {
		t.Fatal("no curl command for the ACME hostname")
	}
	out, err := exec.Command("sh", "-c", curl+" --silent --show-error --max-time 10").CombinedOutput()
	if err != nil || !regexp.MustCompile(`^hello from uni-a-[12]: host=`).Match(out) {
		t.Errorf("%s\n=> %v: %s", curl, err, out)
	}
	t.Logf("states: %q", states)
}
