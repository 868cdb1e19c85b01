package certs

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestScanDir(t *testing.T) {
	p := newPKI(t)
	dir := t.TempDir()
	split := p.leaf(t, leafSpec{names: []string{"split.uni-a.test"}})
	combined := p.leaf(t, leafSpec{names: []string{"combined.uni-a.test"}})
	der := p.leaf(t, leafSpec{names: []string{"der.uni-a.test"}, noChain: true})
	lonely := p.leaf(t, leafSpec{names: []string{"lonely.uni-a.test"}})
	files := map[string][]byte{
		"split.crt":    split.certPEM,
		"split.key":    split.keyPEM,
		"combined.pem": append(append([]byte{}, combined.certPEM...), combined.keyPEM...),
		"der.cer":      der.cert.Raw,
		"der.key":      der.keyPEM,
		"lonely.crt":   lonely.certPEM,
		"orphan.key":   lonely.keyPEM,
		"junk.pem":     []byte("hello"),
		"notes.txt":    []byte("ignored"),
		"two.crt":      split.certPEM,
		"two.pem":      split.certPEM,
		"two.key":      split.keyPEM,
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "unreadable.pem"), split.certPEM, 0o000); err != nil {
		t.Fatal(err)
	}
	items, errs := ScanDir(dir)

	var gotSources []string
	for _, it := range items {
		gotSources = append(gotSources, strings.TrimPrefix(it.Source, dir+"/"))
	}
	wantSources := []string{"combined.pem", "der.cer + der.key", "split.crt + split.key"}
	if diff := cmp.Diff(gotSources, wantSources); diff != "" {
		t.Errorf("items (-got +want):\n%s", diff)
	}
	var gotErrs []string
	for _, e := range errs {
		gotErrs = append(gotErrs, strings.ReplaceAll(e.Error(), dir+"/", ""))
	}
	wantErrs := []string{
		"junk.pem: no PEM certificate or private key found",
		"lonely.crt: no private key: put it in the same file or in lonely.key",
		"orphan.key: private key without a certificate: expected orphan.crt or orphan.pem",
		"two.crt: cannot pair: 2 certificate files and 1 key files are named two.*",
		"two.key: cannot pair: 2 certificate files and 1 key files are named two.*",
		"two.pem: cannot pair: 2 certificate files and 1 key files are named two.*",
	}
	if os.Geteuid() == 0 {
		// Root reads a file of mode 0000: it is a lone certificate.
		wantErrs = append(wantErrs, "unreadable.pem: no private key: put it in the same file or in unreadable.key")
	} else {
		wantErrs = append(wantErrs, "unreadable.pem: open unreadable.pem: permission denied")
	}
	if diff := cmp.Diff(gotErrs, wantErrs); diff != "" {
		t.Errorf("errors (-got +want):\n%s", diff)
	}

	// The items import as they are.
	st, _ := openStore(t)
	m := startManager(t, st, Options{})
	for _, r := range m.AddBatch(context.Background(), items) {
		if r.Err != nil {
			t.Errorf("importing %s: %v", r.Source, r.Err)
		}
	}
	if got, want := m.Count(), int64(3); got != want {
		t.Errorf("Count after import = %d, want %d", got, want)
	}
}
