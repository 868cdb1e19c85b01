package server

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"gatehouse/internal/config"
)

// TestSecretFilesArePrivate: the generated admin key and token are 0600
// whatever the umask or a leftover temporary file; a key or token readable
// by group or others is refused at load.
func TestSecretFilesArePrivate(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "admin.crt"), filepath.Join(dir, "admin.key")
	os.WriteFile(keyFile+".tmp", []byte("stale"), 0o666) // left by a crash
	if _, err := LoadOrCreateAdminCert(certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	tokFile := filepath.Join(dir, "admin.token")
	if _, _, err := LoadOrCreateToken(tokFile); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{keyFile, tokFile} {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if perm := st.Mode().Perm(); perm != 0o600 {
			t.Errorf("%s written with mode %04o, want 0600", filepath.Base(f), perm)
		}
		os.Chmod(f, 0o640)
	}
	if _, err := LoadOrCreateAdminCert(certFile, keyFile); err == nil || !strings.Contains(err.Error(), keyFile) || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("admin key with mode 0640: %v; want a refusal naming the file and chmod 600", err)
	}
	if _, _, err := LoadOrCreateToken(tokFile); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("admin token with mode 0640: %v; want a refusal", err)
	}
}

func TestCheckDataDir(t *testing.T) {
	for _, tt := range []struct {
		mode os.FileMode
		ok   bool
	}{{0o700, true}, {0o755, true}, {0o750, true}, {0o770, false}, {0o757, false}, {0o777, false}} {
		dir := t.TempDir()
		os.Chmod(dir, tt.mode)
		err := CheckDataDir(dir)
		if (err == nil) != tt.ok {
			t.Errorf("mode %04o: %v, want ok=%v", tt.mode, err, tt.ok)
		}
		if err != nil && (!strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "chmod 700")) {
			t.Errorf("mode %04o: %v does not name the directory and the fix", tt.mode, err)
		}
	}
}

type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestRemoteAdminWarns: an admin listener configured on every interface
// logs a warning at start. (The socket itself is bound on loopback through
// the Listen hook: the test opens no port beyond it.)
func TestRemoteAdminWarns(t *testing.T) {
	for _, tt := range []struct {
		addr string
		warn bool
	}{{"0.0.0.0:0", true}, {"127.0.0.1:0", false}, {"localhost:0", false}} {
		var buf logBuf
		cfg := &config.Config{}
		cfg.Listeners.HTTPS.Address = "127.0.0.1:0"
		cfg.Listeners.Admin = config.Listener{Address: tt.addr, AllowRemote: true}
		s := New(cfg, Options{
			Logger: slog.New(slog.NewTextHandler(&buf, nil)),
			Edge:   http.NotFoundHandler(),
			Admin:  http.NotFoundHandler(),
			Listen: func(network, addr string) (net.Listener, error) { return net.Listen(network, "127.0.0.1:0") },
		})
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
		s.Shutdown(context.Background())
		if got := strings.Contains(buf.String(), "non-loopback"); got != tt.warn {
			t.Errorf("admin on %s: warning logged = %v, want %v\n%s", tt.addr, got, tt.warn, buf.String())
		}
	}
}
