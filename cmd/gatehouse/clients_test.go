package main

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"gatehouse/internal/demo"
)

// requireTool finds an external client; in CI a missing tool is a failure,
// elsewhere the test is skipped with the reason.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not installed; scripts/test.sh installs it", name)
		}
		t.Skipf("%s is not installed (scripts/test.sh installs it)", name)
	}
	return p
}

// TestDemoCommands runs the quickstart as the README says and pastes the
// curl commands it prints, as a newcomer would.
func TestDemoCommands(t *testing.T) {
	requireTool(t, "curl")
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	data := t.TempDir()
	go func() {
		done <- runDemo(ctx, data, demo.Addrs{HTTPS: "127.0.0.1:0", Status: "127.0.0.1:0", Admin: "127.0.0.1:0"}, pw)
		pw.Close()
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("demo exited with %v", err)
		}
	}()
	var cmds []string
	var mu sync.Mutex
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "curl ") {
			line, _, _ = strings.Cut(line, "#")
			mu.Lock()
			cmds = append(cmds, strings.TrimSpace(line))
			mu.Unlock()
		}
		if strings.HasPrefix(line, "Press Ctrl-C") {
			break
		}
	}
	go io.Copy(io.Discard, pr)
	if len(cmds) < 4 {
		t.Fatalf("demo printed %d curl commands, want at least 4", len(cmds))
	}
	wantBackend := regexp.MustCompile(`^hello from uni-[abc]-[12]: host=`)
	for _, c := range cmds {
		out, err := exec.Command("sh", "-c", c+" --silent --show-error --max-time 10").CombinedOutput()
		if err != nil || !wantBackend.Match(out) {
			t.Errorf("%s\n=> %v: %s", c, err, out)
		}
	}
}

// TestOpenSSLClient checks the served certificate per SNI with openssl s_client.
func TestOpenSSLClient(t *testing.T) {
	openssl := requireTool(t, "openssl")
	tn := startTestNode(t, twoPools(t))
	tn.addCert("app.uni-a.test")
	tn.addCert("*.uni-c.test")
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, tn.ca.CertPEM, 0o644)
	for _, tt := range []struct{ sni, wantSubject string }{
		{"app.uni-a.test", "CN = app.uni-a.test"},
		{"deep.uni-c.test", "CN = *.uni-c.test"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		cmd := exec.CommandContext(ctx, openssl, "s_client", "-connect", tn.Addr("https"), "-servername", tt.sni,
			"-CAfile", caFile, "-verify_return_error", "-brief")
		cmd.Stdin = strings.NewReader("")
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil || !strings.Contains(string(out), "Peer certificate: "+tt.wantSubject) || !strings.Contains(string(out), "Verification: OK") {
			t.Errorf("openssl s_client -servername %s: %v\n%s", tt.sni, err, out)
		}
	}
	// Unknown name: the handshake fails with unrecognized_name.
	cmd := exec.Command(openssl, "s_client", "-connect", tn.Addr("https"), "-servername", "unknown.test", "-brief")
	cmd.Stdin = strings.NewReader("")
	out, _ := cmd.CombinedOutput()
	if !strings.Contains(string(out), "unrecognized name") {
		t.Errorf("openssl with unknown SNI: want alert unrecognized name, got:\n%s", out)
	}
}

// TestH2Load drives the edge with h2load over HTTP/2 (SNI from the URL,
// the connection to the listener) and checks every request succeeded.
func TestH2Load(t *testing.T) {
	h2load := requireTool(t, "h2load")
	tn := startTestNode(t, twoPools(t))
	tn.addCert("app.uni-a.test")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, port, _ := strings.Cut(tn.Addr("https"), ":")
	out, err := exec.CommandContext(ctx, h2load, "-n", "400", "-c", "4", "-m", "10",
		"--connect-to="+tn.Addr("https"), "https://app.uni-a.test:"+port+"/").CombinedOutput()
	if err != nil {
		t.Fatalf("h2load: %v\n%s", err, out)
	}
	for _, want := range []string{"Application protocol: h2", "requests: 400 total, 400 started, 400 done, 400 succeeded, 0 failed, 0 errored", "status codes: 400 2xx"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("h2load output lacks %q:\n%s", want, out)
		}
	}
}
