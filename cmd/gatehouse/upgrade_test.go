package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"gatehouse/internal/admin"
	"gatehouse/internal/demo"
	"gatehouse/internal/store/bolt"
)

const upgradeHost = "app.upgrade.test"

// upgradeEnv is a real `gatehouse serve` process built from this tree, on
// loopback ports, with a bolt store, a loopback backend and a certificate.
type upgradeEnv struct {
	t        *testing.T
	dir      string
	bin      string // the path serve runs from; the tests replace it
	built    string // the binary as built
	cfgPath  string
	pidFile  string
	logPath  string
	httpsAdr string
	roots    *x509.CertPool
	ca       *demo.CA
	client   *admin.Client
	serial   string // of the certificate the load checks
	first    *exec.Cmd
	firstEnd chan error
	// A backend request to /hold is answered once release is closed; held
	// receives when one arrives.
	held        chan struct{}
	release     chan struct{}
	releaseOnce sync.Once
}

// buildGatehouse builds this package's binary into dir, with the race
// detector when the test binary has it.
func buildGatehouse(t *testing.T, dir string) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go tool is needed to build the binary under test: %v", err)
	}
	out := filepath.Join(dir, "gatehouse.built")
	args := []string{"build", "-o", out}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "-race" && s.Value == "true" {
				args = append(args, "-race")
			}
		}
	}
	cmd := exec.Command(goTool, append(args, ".")...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	return out
}

func freeLoopbackAddrs(t *testing.T, n int) []string {
	t.Helper()
	var lns []net.Listener
	var addrs []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		addrs = append(addrs, ln.Addr().String())
	}
	for _, ln := range lns {
		ln.Close()
	}
	return addrs
}

func startUpgradeEnv(t *testing.T) *upgradeEnv {
	t.Helper()
	dir := t.TempDir()
	e := &upgradeEnv{t: t, dir: dir, bin: filepath.Join(dir, "gatehouse"), pidFile: filepath.Join(dir, "gatehouse.pid"),
		logPath: filepath.Join(dir, "gatehouse.log"), cfgPath: filepath.Join(dir, "gatehouse.yaml")}
	e.built = gatehouseBinary(t)
	e.install(e.built)

	e.held, e.release = make(chan struct{}, 1), make(chan struct{})
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d, err := time.ParseDuration(r.URL.Query().Get("sleep")); err == nil {
			time.Sleep(d)
		}
		if r.URL.Path == "/hold" {
			e.held <- struct{}{}
			select {
			case <-e.release:
			case <-r.Context().Done():
			}
		}
		io.WriteString(w, "b1")
	}))
	t.Cleanup(be.Close)
	t.Cleanup(e.releaseHeld)
	addrs := freeLoopbackAddrs(t, 4)
	e.httpsAdr = addrs[0]
	cfg := fmt.Sprintf(`data_dir: %s
log: {level: info}
listeners:
  https: {address: %q}
  http: {address: %q}
  status: {address: %q}
  admin: {address: %q}
pools:
  - name: a
    members: [{address: %q}]
routes:
  - {host: %s, pool: a}
`, filepath.Join(dir, "data"), addrs[0], addrs[1], addrs[2], addrs[3], strings.TrimPrefix(be.URL, "http://"), upgradeHost)
	if err := os.WriteFile(e.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	logf, err := os.OpenFile(e.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	// A file, not a pipe: the processes an upgrade starts inherit it, and
	// Wait must not wait for them.
	e.first = exec.Command(e.bin, "serve", "-c", e.cfgPath, "--pid-file", e.pidFile, "--upgrade-timeout", "2s")
	e.first.Dir, e.first.Stdout, e.first.Stderr = dir, logf, logf
	// A race-enabled binary otherwise sleeps a second before it exits.
	e.first.Env = append(os.Environ(), "GORACE="+os.Getenv("GORACE")+" atexit_sleep_ms=0")
	if err := e.first.Start(); err != nil {
		t.Fatal(err)
	}
	e.firstEnd = make(chan error, 1)
	go func() { e.firstEnd <- e.first.Wait() }()
	t.Cleanup(func() {
		if n := e.logCount("DATA RACE"); n > 0 {
			t.Errorf("the race detector reported %d data races in the server processes (see the server log)", n)
		}
	})
	t.Cleanup(e.stopAll)
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(e.logPath)
			t.Logf("server log:\n%s", b)
		}
	})
	if pid := e.waitPID(0, 15*time.Second); pid != e.first.Process.Pid {
		t.Fatalf("PID file names %d, want the started process %d", pid, e.first.Process.Pid)
	}

	dataDir := filepath.Join(dir, "data")
	tok, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	adminCA, err := os.ReadFile(filepath.Join(dataDir, "admin.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if e.client, err = admin.NewClient("https://"+addrs[3], strings.TrimSpace(string(tok)), adminCA); err != nil {
		t.Fatal(err)
	}
	if e.ca, err = demo.LoadOrCreateCA(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	e.roots = x509.NewCertPool()
	e.roots.AddCert(e.ca.Cert)
	res, err := e.addCert(upgradeHost)
	if err != nil {
		t.Fatalf("adding the certificate: %v", err)
	}
	e.serial = res.Cert.Serial
	return e
}

// install puts a copy of src at the path serve runs from, replacing the
// file (as a package manager does), not writing into the running one.
func (e *upgradeEnv) install(src string) {
	e.t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		e.t.Fatal(err)
	}
	e.installBytes(b)
}

func (e *upgradeEnv) installBytes(b []byte) {
	e.t.Helper()
	tmp := e.bin + ".new"
	if err := os.WriteFile(tmp, b, 0o755); err != nil {
		e.t.Fatal(err)
	}
	if err := os.Rename(tmp, e.bin); err != nil {
		e.t.Fatal(err)
	}
}

func (e *upgradeEnv) releaseHeld() { e.releaseOnce.Do(func() { close(e.release) }) }

func (e *upgradeEnv) addCert(names ...string) (admin.CertResponse, error) {
	certPEM, keyPEM, err := e.ca.Issue(names...)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.client.AddCert(context.Background(), certPEM, keyPEM)
}

// waitPID polls the PID file until it names a live process other than
// not, and returns it.
func (e *upgradeEnv) waitPID(not int, within time.Duration) int {
	e.t.Helper()
	deadline := time.Now().Add(within)
	for {
		if pid, err := readPIDFile(e.pidFile); err == nil && pid != not && alive(pid) {
			return pid
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("PID file %s named no new live process within %s", e.pidFile, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// logCount counts the server log lines containing s.
func (e *upgradeEnv) logCount(s string) int {
	b, _ := os.ReadFile(e.logPath)
	return bytes.Count(b, []byte(s))
}

// waitLog polls until the server log has more than n lines containing s.
func (e *upgradeEnv) waitLog(s string, n int, within time.Duration) {
	e.t.Helper()
	deadline := time.Now().Add(within)
	for e.logCount(s) <= n {
		if time.Now().After(deadline) {
			e.t.Fatalf("the server did not log %q within %s", s, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// writeEventually adds a certificate, retrying only while the store says
// it is read-only for an upgrade; it returns how many writes were refused.
func (e *upgradeEnv) writeEventually(name string, within time.Duration) int {
	e.t.Helper()
	deadline := time.Now().Add(within)
	for refused := 0; ; refused++ {
		_, err := e.addCert(name)
		if err == nil {
			return refused
		}
		var apiErr *admin.APIError
		if !errors.As(err, &apiErr) || apiErr.Status != http.StatusServiceUnavailable || !strings.Contains(apiErr.Message, "upgrade is in progress") {
			e.t.Fatalf("adding %s: %v; want success, or 503 while the upgrade hands over the store", name, err)
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("adding %s: still refused after %s: %v", name, within, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stopAll ends whichever process serves and the first one.
func (e *upgradeEnv) stopAll() {
	if pid, err := readPIDFile(e.pidFile); err == nil && alive(pid) {
		syscall.Kill(pid, syscall.SIGTERM)
		deadline := time.Now().Add(20 * time.Second)
		for alive(pid) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if alive(pid) {
			e.t.Errorf("process %d did not stop on SIGTERM", pid)
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if e.first.ProcessState == nil {
		e.first.Process.Signal(syscall.SIGTERM)
		select {
		case <-e.firstEnd:
		case <-time.After(20 * time.Second):
			e.first.Process.Kill()
		}
	}
}

// loadGen runs requests against the HTTPS listener until stopped: new TLS
// connections (a handshake each, checking the served certificate) and
// requests on kept-alive HTTP/1.1 and HTTP/2 connections.
type loadGen struct {
	e        *upgradeEnv
	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
	ok       atomic.Int64
	hs       atomic.Int64 // handshakes completed by the new-connection workers
	inFlight atomic.Int64
	mu       sync.Mutex
	failures []string
}

func (e *upgradeEnv) startLoad() *loadGen {
	l := &loadGen{e: e, stop: make(chan struct{})}
	for range 3 {
		l.wg.Go(l.newConnections)
	}
	for range 3 {
		l.wg.Go(func() { l.keepAlive(false) })
	}
	l.wg.Go(func() { l.keepAlive(true) })
	return l
}

func (l *loadGen) fail(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.failures) < 20 {
		l.failures = append(l.failures, time.Now().Format("15:04:05.000 ")+fmt.Sprintf(format, args...))
	}
}

func (l *loadGen) stopped() bool {
	select {
	case <-l.stop:
		return true
	default:
		return false
	}
}

func (l *loadGen) newConnections() {
	cfg := &tls.Config{ServerName: upgradeHost, RootCAs: l.e.roots}
	for !l.stopped() {
		l.inFlight.Add(1)
		err := l.oneConnection(cfg)
		l.inFlight.Add(-1)
		if err != nil {
			l.fail("new connection: %v", err)
			continue
		}
		l.ok.Add(1)
	}
}

func (l *loadGen) oneConnection(cfg *tls.Config) error {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", l.e.httpsAdr, cfg)
	if err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	defer conn.Close()
	l.hs.Add(1)
	if got := conn.ConnectionState().PeerCertificates[0].SerialNumber.Text(16); got != l.e.serial {
		return fmt.Errorf("served certificate serial %s, want %s", got, l.e.serial)
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", upgradeHost); err != nil {
		return fmt.Errorf("writing the request: %w", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return fmt.Errorf("reading the response: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK || string(b) != "b1" {
		return fmt.Errorf("response %d %q %v, want 200 b1", resp.StatusCode, b, err)
	}
	return nil
}

func (l *loadGen) keepAlive(h2 bool) {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, l.e.httpsAdr)
		},
		TLSClientConfig:   &tls.Config{RootCAs: l.e.roots},
		ForceAttemptHTTP2: h2,
	}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	for i := 0; !l.stopped(); i++ {
		url := "https://" + upgradeHost + "/"
		if i%10 == 0 {
			url += "?sleep=20ms" // some requests are in flight at any moment
		}
		l.inFlight.Add(1)
		err := func() error {
			resp, err := c.Get(url)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil || resp.StatusCode != http.StatusOK || string(b) != "b1" {
				return fmt.Errorf("response %d %q %v, want 200 b1", resp.StatusCode, b, err)
			}
			return nil
		}()
		l.inFlight.Add(-1)
		if err != nil {
			l.fail("keep-alive (h2 %v): %v", h2, err)
			continue
		}
		l.ok.Add(1)
	}
}

// waitOK waits until n more requests have succeeded.
func (l *loadGen) waitOK(n int64, within time.Duration) {
	l.e.t.Helper()
	target := l.ok.Load() + n
	deadline := time.Now().Add(within)
	for l.ok.Load() < target {
		if time.Now().After(deadline) {
			l.e.t.Fatalf("load made no progress: %d requests ok, want %d", l.ok.Load(), target)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (l *loadGen) finish() []string {
	l.stopOnce.Do(func() { close(l.stop) })
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.failures
}

// TestBinaryUpgrade runs gatehouse serve as a real process under continuous
// load and upgrades it: three failed upgrades leave the old process serving
// with a writable store, then a successful one moves every socket to the
// new process, with no failed handshake or request.
func TestBinaryUpgrade(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	e := startUpgradeEnv(t)
	oldPID := e.first.Process.Pid
	load := e.startLoad()
	defer load.finish() // on a Fatal
	load.waitOK(100, 10*time.Second)

	good, err := os.ReadFile(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	failures := []struct {
		name   string
		break_ func()
		undo   func()
	}{
		{"new binary exits 1",
			func() { e.installBytes([]byte("#!/bin/sh\nexit 1\n")) },
			func() { e.install(e.built) }},
		{"new binary never becomes ready",
			func() { e.installBytes([]byte("#!/bin/sh\nexec sleep 30\n")) },
			func() { e.install(e.built) }},
		{"config no longer valid",
			func() {
				os.WriteFile(e.cfgPath, bytes.Replace(good, []byte("pool: a}"), []byte("pool: nope}"), 1), 0o600)
			},
			func() { os.WriteFile(e.cfgPath, good, 0o600) }},
	}
	for i, tt := range failures {
		t.Run(tt.name, func(t *testing.T) {
			tt.break_()
			defer tt.undo()
			before := e.logCount("upgrade failed")
			if err := syscall.Kill(oldPID, syscall.SIGUSR2); err != nil {
				t.Fatal(err)
			}
			e.waitLog("upgrade failed", before, 10*time.Second)
			if pid, err := readPIDFile(e.pidFile); err != nil || pid != oldPID {
				t.Fatalf("PID file after a failed upgrade = %d, %v; want the old %d", pid, err, oldPID)
			}
			if !alive(oldPID) {
				t.Fatal("the old process died with the failed upgrade")
			}
			load.waitOK(50, 10*time.Second)
			refused := e.writeEventually(fmt.Sprintf("fail%d.upgrade.test", i), 10*time.Second)
			t.Logf("writes refused while the store was handed back: %d", refused)
		})
	}
	if t.Failed() {
		return
	}

	t.Run("upgrade under load", func(t *testing.T) {
		e.install(e.built) // a new file at the same path
		// A request held at the backend keeps the old process draining, so
		// that the hand-over of the store can be observed.
		heldDone := make(chan error, 1)
		go func() {
			c := &http.Client{Transport: &http.Transport{
				DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
					return (&net.Dialer{}).DialContext(ctx, network, e.httpsAdr)
				},
				TLSClientConfig: &tls.Config{RootCAs: e.roots},
			}, Timeout: 20 * time.Second}
			resp, err := c.Get("https://" + upgradeHost + "/hold")
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || string(b) != "b1" {
					err = fmt.Errorf("response %d %q, want 200 b1", resp.StatusCode, b)
				}
			}
			heldDone <- err
		}()
		select {
		case <-e.held:
		case <-time.After(10 * time.Second):
			t.Fatal("the held request never reached the backend")
		}

		okBefore, inFlight := load.ok.Load(), load.inFlight.Load()
		start := time.Now()
		var out bytes.Buffer
		if err := runUpgrade(context.Background(), e.pidFile, 20*time.Second, &out); err != nil {
			t.Fatalf("gatehouse upgrade: %v", err)
		}
		ready := time.Since(start)
		newPID := e.waitPID(oldPID, time.Second)
		if want := fmt.Sprintf("upgraded: process %d serves", newPID); !strings.Contains(out.String(), want) {
			t.Errorf("gatehouse upgrade printed %q, want it to contain %q", out.String(), want)
		}

		// Both processes now hold the store read-only: a write is refused,
		// clearly, and nothing is written.
		_, err := e.addCert("during.upgrade.test")
		var apiErr *admin.APIError
		if !errors.As(err, &apiErr) || apiErr.Status != http.StatusServiceUnavailable || !strings.Contains(apiErr.Message, "upgrade is in progress") {
			t.Fatalf("write while the old process drains: err = %v, want 503 saying an upgrade is in progress", err)
		}
		if !alive(oldPID) {
			t.Fatal("the old process exited with a request in flight")
		}
		e.releaseHeld()
		if err := <-heldDone; err != nil {
			t.Fatalf("request in flight across the upgrade: %v", err)
		}
		select {
		case err := <-e.firstEnd:
			if err != nil {
				t.Fatalf("the old process exited with %v, want 0 after draining", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("the old process did not exit after draining")
		}
		exited := time.Since(start)
		okDuring := load.ok.Load() - okBefore
		refused := e.writeEventually("after.upgrade.test", 10*time.Second)
		leaf, err := tlsLeaf(e, upgradeHost)
		if err != nil || leaf != e.serial {
			t.Fatalf("certificate served by the new process: serial %s, %v; want %s", leaf, err, e.serial)
		}
		load.waitOK(200, 10*time.Second) // served by the new process alone
		if !alive(newPID) {
			t.Fatal("the new process is gone")
		}
		t.Logf("upgrade under load: new process %d ready %v after the signal (%d requests in flight then, %d completed until the old process %d exited %v after the signal, once its held request was released); %d writes refused after it exited",
			newPID, ready.Round(time.Millisecond), inFlight, okDuring, oldPID, exited.Round(time.Millisecond), refused)
	})

	// The admin API's upgrade answers with the reason when the new binary
	// fails, and returns once the new process serves when it does not.
	t.Run("upgrade through the admin API", func(t *testing.T) {
		pid, err := readPIDFile(e.pidFile)
		if err != nil {
			t.Fatal(err)
		}
		e.installBytes([]byte("#!/bin/sh\nexit 1\n"))
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err = e.client.Upgrade(ctx)
		var apiErr *admin.APIError
		if !errors.As(err, &apiErr) || apiErr.Status != http.StatusConflict || apiErr.Code != "upgrade_failed" {
			t.Fatalf("admin upgrade to a binary that exits 1: err = %v, want 409 upgrade_failed", err)
		}
		if !alive(pid) {
			t.Fatal("the serving process died with the failed upgrade")
		}
		e.install(e.built)
		e.writeEventually("before.admin-upgrade.test", 10*time.Second)
		if err := e.client.Upgrade(ctx); err != nil {
			t.Fatalf("admin upgrade: %v", err)
		}
		newPID := e.waitPID(pid, 5*time.Second)
		deadline := time.Now().Add(20 * time.Second)
		for alive(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("process %d still alive 20s after the admin upgrade", pid)
			}
			time.Sleep(20 * time.Millisecond)
		}
		e.writeEventually("after.admin-upgrade.test", 10*time.Second)
		load.waitOK(100, 10*time.Second)
		t.Logf("admin API upgrade: process %d replaced by %d", pid, newPID)
	})

	fails := load.finish()
	t.Logf("load: %d requests ok (%d new TLS connections), %d failed", load.ok.Load(), load.hs.Load(), len(fails))
	for _, f := range fails {
		t.Errorf("failed during the upgrades: %s", f)
	}

	// Every process keeps the node's one status record: after two more
	// upgrades (four in all) and a clean stop, none is left in the store,
	// and no upgrade logged a warning about the status portal.
	t.Run("status node record across upgrades", func(t *testing.T) {
		pid, err := readPIDFile(e.pidFile)
		if err != nil {
			t.Fatal(err)
		}
		for range 2 {
			var out bytes.Buffer
			if err := runUpgrade(context.Background(), e.pidFile, 20*time.Second, &out); err != nil {
				t.Fatalf("gatehouse upgrade: %v", err)
			}
			next := e.waitPID(pid, 5*time.Second)
			waitGone(t, pid, 20*time.Second)
			e.writeEventually(fmt.Sprintf("upgrade%d.records.test", next), 10*time.Second)
			pid = next
		}
		if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		waitGone(t, pid, 20*time.Second)

		st, err := bolt.Open(filepath.Join(e.dir, "data", "gatehouse.db"), bolt.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		kvs, _, err := st.List(context.Background(), "status/nodes/", "", 0)
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for _, kv := range kvs {
			keys = append(keys, kv.Key)
		}
		if len(keys) != 0 {
			t.Errorf("status node records after 4 upgrades and a clean stop: %q, want none", keys)
		}
		b, err := os.ReadFile(e.logPath)
		if err != nil {
			t.Fatal(err)
		}
		nodes := map[string]bool{}
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, "status observations handed over") {
				_, after, _ := strings.Cut(line, "node=")
				nodes[strings.Fields(after + " ")[0]] = true
			}
			if strings.Contains(line, "level=WARN") && (strings.Contains(line, "status") || strings.Contains(line, "read-only")) {
				t.Errorf("an upgrade logged: %s", line)
			}
		}
		if len(nodes) != 1 {
			t.Errorf("node names handed over by the upgrades: %v, want one name kept throughout", nodes)
		}
	})
}

// waitGone waits until process pid has exited.
func waitGone(t *testing.T, pid int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d still alive after %s", pid, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// tlsLeaf returns the serial of the certificate served for sni.
func tlsLeaf(e *upgradeEnv, sni string) (string, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", e.httpsAdr, &tls.Config{ServerName: sni, RootCAs: e.roots})
	if err != nil {
		return "", err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.Text(16), nil
}
