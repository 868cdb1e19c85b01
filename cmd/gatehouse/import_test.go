package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestImportMixedDirectory imports a directory of good, malformed,
// mismatched, expired and duplicate bundles: every good one is imported,
// each bad one is reported with its reason, and the counts add up.
func TestImportMixedDirectory(t *testing.T) {
	tn := startTestNode(t, twoPools(t))
	dir := t.TempDir()
	write := func(name string, data ...[]byte) {
		if err := os.WriteFile(filepath.Join(dir, name), bytes.Join(data, nil), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for i, host := range []string{"a1.uni-a.test", "a2.uni-a.test", "a3.uni-a.test"} {
		c, k, _ := tn.ca.Issue(host)
		if i == 0 {
			write("a1.crt", c) // split files, paired by name
			write("a1.key", k)
			continue
		}
		write(host+".pem", c, k)
	}
	dupC, dupK, _ := tn.ca.Issue("dup.uni-a.test")
	write("dup1.pem", dupC, dupK)
	write("dup2.pem", dupC, dupK) // the same bundle again: idempotent
	write("garbage.pem", []byte("-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n"))
	c1, _, _ := tn.ca.Issue("mismatch.uni-a.test")
	_, k2, _ := tn.ca.Issue("other.uni-a.test")
	write("mismatch.pem", c1, k2)
	expC, expK, _ := tn.ca.IssueUntil(time.Now().Add(-time.Hour), "expired.uni-a.test")
	write("expired.pem", expC, expK)
	lonely, _, _ := tn.ca.Issue("lonely.uni-a.test")
	write("lonely.crt", lonely) // no key anywhere

	var out, errOut bytes.Buffer
	err := runImport(context.Background(), tn.client.AddCerts, dir, 2, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "4 of 9 inputs refused") {
		t.Fatalf("import error = %v, want 4 of 9 inputs refused\nstderr:\n%s", err, errOut.String())
	}
	if !regexp.MustCompile(`: 9 inputs, 5 imported, 4 refused, in `).MatchString(out.String()) {
		t.Errorf("summary = %q", out.String())
	}
	for _, want := range []string{
		"refused " + filepath.Join(dir, "garbage.pem") + ": ",
		"refused " + filepath.Join(dir, "mismatch.pem") + ": private key: does not match the leaf certificate's public key",
		"refused " + filepath.Join(dir, "expired.pem") + ": certificate: expired on ",
		"refused " + filepath.Join(dir, "lonely.crt") + ": ",
		"progress: 7/7 bundles",
	} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut.String())
		}
	}
	list, err := tn.client.ListCerts(context.Background(), "", 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 4 {
		t.Errorf("installed %d bundles, want 4 (three hosts and one duplicate pair)", len(list))
	}
	for _, h := range []string{"a1.uni-a.test", "a2.uni-a.test", "a3.uni-a.test", "dup.uni-a.test"} {
		if _, err := tn.handshake(h); err != nil {
			t.Errorf("imported %s not served: %v", h, err)
		}
	}
}

func TestStoreQuotaRefusesWrites(t *testing.T) {
	tn := startTestNode(t, twoPools(t)+"limits: {store_quota: 1MiB}\n")
	var refused error
	for i := 0; i < 2000 && refused == nil; i++ {
		c, k, _ := tn.ca.Issue(fmt.Sprintf("q%s-%d.uni-a.test", strings.Repeat("x", 40), i))
		_, refused = tn.client.AddCert(context.Background(), c, k)
	}
	if refused == nil || !strings.Contains(refused.Error(), "quota") {
		t.Fatalf("filling a 1MiB store: last error %v, want a quota refusal", refused)
	}
	// Serving goes on, and the node still answers reads.
	if _, err := tn.client.ListCerts(context.Background(), "", 10); err != nil {
		t.Fatalf("reads after the quota refusal: %v", err)
	}
}
