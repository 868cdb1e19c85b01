package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gatehouse/internal/certs"
)

// TestGenerate makes a small run's certificates and checks that an import
// would take every one: each file is a valid bundle for its name.
func TestGenerate(t *testing.T) {
	dir := t.TempDir()
	const n, w = 200, 3
	if err := generate(dir, n, w, nil); err != nil {
		t.Fatal(err)
	}
	scan, err := certs.OpenDir(filepath.Join(dir, "import"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := scan.Groups(), n+w; got != want {
		t.Errorf("import directory holds %d bundles, want %d", got, want)
	}
	names := map[string]bool{}
	for it, fe := range scan.All() {
		if fe != nil {
			t.Errorf("refused file: %v", fe)
			continue
		}
		b, err := certs.ParseBundle(it.CertPEM, it.KeyPEM)
		if err != nil {
			t.Errorf("%s: %v", it.Source, err)
			continue
		}
		if _, err := certs.Validate(b, time.Now(), certs.ValidateOptions{}); err != nil {
			t.Errorf("%s: %v", it.Source, err)
		}
		if b.KeyType != "ecdsa-p256" {
			t.Errorf("%s: key type %s, want ecdsa-p256", it.Source, b.KeyType)
		}
		names[b.Names[0]] = true
	}
	for _, want := range []string{hostName(0), hostName(n - 1), wildName(0), wildName(w - 1)} {
		if !names[want] {
			t.Errorf("no bundle for %s", want)
		}
	}
	hosts, err := os.ReadFile(filepath.Join(dir, "hosts.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(string(hosts), "\n"); got != n {
		t.Errorf("hosts.txt has %d lines, want %d", got, n)
	}
	// A second run reuses the CA and the files.
	before, _ := os.ReadFile(filepath.Join(dir, "import", hostName(0)+".pem"))
	if err := generate(dir, n, w, nil); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, "import", hostName(0)+".pem"))
	if string(before) != string(after) {
		t.Error("a second generate rewrote an existing bundle")
	}
}

func TestPercentile(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	tests := []struct {
		p    float64
		want time.Duration
	}{{0.5, 51 * time.Millisecond}, {0.99, 100 * time.Millisecond}, {0, time.Millisecond}}
	for _, tc := range tests {
		if got := pct(ds, tc.p); got != tc.want {
			t.Errorf("pct(%v) = %v, want %v", tc.p, got, tc.want)
		}
	}
}
