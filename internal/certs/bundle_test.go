package certs

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseBundleFormats(t *testing.T) {
	p := newPKI(t)
	ec := p.leaf(t, leafSpec{names: []string{"App.Uni-A.test", "app.uni-a.test", "www.uni-a.test"}})
	sec1 := p.leaf(t, leafSpec{names: []string{"sec1.uni-a.test"}, keyFormat: "sec1"})
	pkcs1 := p.leaf(t, leafSpec{names: []string{"rsa.uni-a.test"}, rsa: true, keyFormat: "pkcs1"})
	cnOnly := p.leaf(t, leafSpec{cn: "CN.Uni-A.test"})
	combined := append(append([]byte{}, ec.certPEM...), ec.keyPEM...)

	tests := []struct {
		name          string
		certPEM, key  []byte
		want          testLeaf
		wantNames     []string
		wantKeyType   string
		wantChainSize int
	}{
		{"split pkcs8", ec.certPEM, ec.keyPEM, ec, []string{"app.uni-a.test", "www.uni-a.test"}, "ecdsa-p256", 1},
		{"combined file", combined, nil, ec, []string{"app.uni-a.test", "www.uni-a.test"}, "ecdsa-p256", 1},
		{"sec1 key", sec1.certPEM, sec1.keyPEM, sec1, []string{"sec1.uni-a.test"}, "ecdsa-p256", 1},
		{"pkcs1 key", pkcs1.certPEM, pkcs1.keyPEM, pkcs1, []string{"rsa.uni-a.test"}, "rsa-2048", 1},
		{"common name only", cnOnly.certPEM, cnOnly.keyPEM, cnOnly, []string{"cn.uni-a.test"}, "ecdsa-p256", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := ParseBundle(tt.certPEM, tt.key)
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(tt.want.cert.Raw)
			if got, want := b.ID, hex.EncodeToString(sum[:10]); got != want {
				t.Errorf("ID = %q, want %q", got, want)
			}
			if len(b.ID) != 20 {
				t.Errorf("ID %q has %d characters, want 20", b.ID, len(b.ID))
			}
			if diff := cmp.Diff(b.Names, tt.wantNames); diff != "" {
				t.Errorf("Names (-got +want):\n%s", diff)
			}
			if b.KeyType != tt.wantKeyType {
				t.Errorf("KeyType = %q, want %q", b.KeyType, tt.wantKeyType)
			}
			if len(b.Chain) != tt.wantChainSize {
				t.Errorf("chain has %d certificates, want %d", len(b.Chain), tt.wantChainSize)
			}
			if !b.NotAfter.Equal(tt.want.cert.NotAfter) {
				t.Errorf("NotAfter = %v, want %v", b.NotAfter, tt.want.cert.NotAfter)
			}
			if _, err := Validate(b, time.Now(), ValidateOptions{}); err != nil {
				t.Errorf("Validate: %v", err)
			}
		})
	}
}

func TestValidateRefusals(t *testing.T) {
	p := newPKI(t)
	good := p.leaf(t, leafSpec{names: []string{"app.uni-a.test"}})
	other := p.leaf(t, leafSpec{names: []string{"other.uni-a.test"}})
	expired := p.leaf(t, leafSpec{names: []string{"old.uni-a.test"},
		notBefore: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), notAfter: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)})
	future := p.leaf(t, leafSpec{names: []string{"new.uni-a.test"},
		notBefore: time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC), notAfter: time.Date(2099, 6, 1, 0, 0, 0, 0, time.UTC)})
	badName := p.leaf(t, leafSpec{names: []string{"ok.uni-a.test", "a..b"}})
	badWildcard := p.leaf(t, leafSpec{names: []string{"a.*.uni-a.test"}})
	broken := append(pemCert(good.cert), pemCert(p.root)...)
	twoKeys := append(append([]byte{}, good.keyPEM...), other.keyPEM...)

	tests := []struct {
		name         string
		certPEM, key []byte
		want         string
	}{
		{"garbage", []byte("not a certificate at all"), good.keyPEM, "certificate PEM: no CERTIFICATE block found"},
		{"empty", nil, nil, "certificate PEM: no CERTIFICATE block found"},
		{"truncated", good.certPEM[:len(good.certPEM)/2], good.keyPEM, "certificate PEM: no CERTIFICATE block found"},
		{"no key", good.certPEM, nil, "private key PEM: no PRIVATE KEY block found in the certificate PEM and no key PEM given"},
		{"key file without key", good.certPEM, []byte("nothing"), "private key PEM: no PRIVATE KEY block found"},
		{"two keys", good.certPEM, twoKeys, "private key PEM: found 2 private keys; want exactly one"},
		{"mismatched key", good.certPEM, other.keyPEM, "private key: does not match the leaf certificate's public key"},
		{"broken chain", broken, good.keyPEM, `chain: certificate 1 ("CN=Test Root") did not sign certificate 0 ("CN=app.uni-a.test")`},
		{"expired", expired.certPEM, expired.keyPEM, "certificate: expired on 2025-01-01T00:00:00Z"},
		{"not yet valid", future.certPEM, future.keyPEM, "certificate: not valid until 2099-01-01T00:00:00Z"},
		{"bad name", badName.certPEM, badName.keyPEM, `name "a..b": empty label`},
		{"wildcard in the middle", badWildcard.certPEM, badWildcard.keyPEM, `name "a.*.uni-a.test": a wildcard is allowed only as the whole first label`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := ParseBundle(tt.certPEM, tt.key)
			if err == nil {
				_, err = Validate(b, time.Now(), ValidateOptions{})
			}
			if err == nil {
				t.Fatalf("got no error, want %q", tt.want)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("error = %q\nwant    %q", got, tt.want)
			}
			var ie *InputError
			if !errors.As(err, &ie) {
				t.Errorf("error %T is not an *InputError", err)
			}
		})
	}
}

func TestValidateExpiryWarning(t *testing.T) {
	p := newPKI(t)
	now := time.Now()
	soon := p.leaf(t, leafSpec{names: []string{"soon.uni-a.test"}, notAfter: now.Add(12*24*time.Hour + time.Hour)})
	b, err := ParseBundle(soon.certPEM, soon.keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		opts ValidateOptions
		want []string
	}{
		{"default window", ValidateOptions{}, []string{"certificate expires in 12 days, on " + b.NotAfter.UTC().Format(time.RFC3339)}},
		{"narrow window", ValidateOptions{ExpiryWarning: 7 * 24 * time.Hour}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Validate(b, now, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("warnings (-got +want):\n%s", diff)
			}
		})
	}
}

func TestCheckName(t *testing.T) {
	tests := []struct {
		name string
		want string
	}{
		{"app.uni-a.test", ""},
		{"*.uni-c.test", ""},
		{"xn--bcher-kva.test", ""},
		{"a..b", "empty label"},
		{".a.b", "empty label"},
		{"a.b.", "empty label"},
		{"*", "a wildcard must be followed by at least two labels (\"*.example.com\")"},
		{"*.com", "a wildcard must be followed by at least two labels (\"*.example.com\")"},
		{"a.*.b", "a wildcard is allowed only as the whole first label"},
		{"*a.b.c", "a wildcard is allowed only as the whole first label"},
		{"**.b.c", "a wildcard is allowed only as the whole first label"},
		{"under_score.test", "bad character '_'"},
		{"sp ace.test", "bad character ' '"},
		{"-lead.test", `label "-lead" starts or ends with a hyphen`},
		{strings.Repeat("a", 64) + ".test", `label "` + strings.Repeat("a", 64) + `" is 64 characters long; the limit is 63`},
		{strings.Repeat("abcdefghi.", 26) + "test", "is 264 characters long; the limit is 253"},
		{"", "empty name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := checkName(tt.name); got != tt.want {
				t.Errorf("checkName(%q) = %q, want %q", tt.name, got, tt.want)
			}
		})
	}
}

func FuzzParseBundle(f *testing.F) {
	p := newPKI(f)
	good := p.leaf(f, leafSpec{names: []string{"app.uni-a.test", "*.uni-a.test"}})
	combined := append(append([]byte{}, good.certPEM...), good.keyPEM...)
	f.Add(combined, []byte(nil))
	f.Add(good.certPEM, good.keyPEM)
	f.Add([]byte("garbage\n-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), []byte("x"))
	f.Add(combined[:len(combined)/3], []byte(nil))
	f.Add(good.certPEM, good.keyPEM[:len(good.keyPEM)-40])
	f.Fuzz(func(t *testing.T, certPEM, keyPEM []byte) {
		b, err := ParseBundle(certPEM, keyPEM)
		if err != nil {
			var ie *InputError
			if !errors.As(err, &ie) {
				t.Fatalf("error %T is not an *InputError: %v", err, err)
			}
			return
		}
		if len(b.ID) != 20 || !isBundleID(b.ID) {
			t.Fatalf("bad ID %q", b.ID)
		}
		for _, n := range b.Names {
			if n != strings.ToLower(n) {
				t.Fatalf("name %q is not lowercase", n)
			}
		}
		if _, err := Validate(b, time.Now(), ValidateOptions{}); err != nil {
			var ie *InputError
			if !errors.As(err, &ie) {
				t.Fatalf("validate error %T is not an *InputError: %v", err, err)
			}
		}
	})
}
