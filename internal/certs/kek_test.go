package certs

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadOrCreateKEK(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "kek")
	k1, err := LoadOrCreateKEK(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fi.Mode().Perm(), os.FileMode(0o600); got != want {
		t.Errorf("created mode = %v, want %v", got, want)
	}
	if got, want := fi.Size(), int64(KEKSize); got != want {
		t.Errorf("created size = %d, want %d", got, want)
	}
	k2, err := LoadOrCreateKEK(path)
	if err != nil {
		t.Fatal(err)
	}
	sealed := k1.seal("0123456789abcdef0123", []byte("secret key bytes"))
	got, err := k2.open("0123456789abcdef0123", sealed)
	if err != nil {
		t.Fatalf("reloaded KEK cannot open what the first sealed: %v", err)
	}
	if string(got) != "secret key bytes" {
		t.Errorf("opened %q, want %q", got, "secret key bytes")
	}
	if _, err := k2.open("ffffffffffffffffffff", sealed); err == nil {
		t.Error("opened a key sealed for another bundle id")
	}
	if bytes.Contains(sealed, []byte("secret key bytes")) {
		t.Error("sealed output contains the plaintext")
	}
}

func TestLoadKEKRefusals(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		content []byte
		mode    os.FileMode
		want    string
	}{
		{"short", make([]byte, 31), 0o600, "is 31 bytes; want exactly 32"},
		{"long", make([]byte, 64), 0o600, "is 64 bytes; want exactly 32"},
		{"group readable", make([]byte, 32), 0o640, "mode 0640 gives access to group or others; want 0600"},
		{"world readable", make([]byte, 32), 0o644, "mode 0644 gives access to group or others; want 0600"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-"))
			if err := os.WriteFile(path, tt.content, tt.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tt.mode); err != nil {
				t.Fatal(err)
			}
			_, err := LoadOrCreateKEK(path)
			if err == nil {
				t.Fatalf("got no error, want one containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("error = %q, want it to name %s and contain %q", err, path, tt.want)
			}
		})
	}
	t.Run("ParseKEK size", func(t *testing.T) {
		_, err := ParseKEK([]byte("short"))
		if got, want := fmt.Sprint(err), "key-encryption key: is 5 bytes; want exactly 32"; got != want {
			t.Errorf("error = %q, want %q", got, want)
		}
	})
}

func TestKEKRedacts(t *testing.T) {
	key := bytes.Repeat([]byte{0xAB}, KEKSize)
	k, err := ParseKEK(key)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("loaded", "kek", k)
	out := buf.String() + fmt.Sprintf("%v %+v %#v %s", k, k, k, k)
	if !strings.Contains(buf.String(), "kek=[redacted]") {
		t.Errorf("log line %q does not show kek=[redacted]", buf.String())
	}
	for _, leak := range []string{"ab", "AB", "171"} {
		if strings.Contains(strings.ReplaceAll(out, "[redacted]", ""), strings.Repeat(leak, 4)) {
			t.Errorf("output %q leaks key bytes", out)
		}
	}
}
