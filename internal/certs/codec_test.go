package certs

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestRecordRoundTrip(t *testing.T) {
	in := &record{
		Leaf:      []byte{0x30, 0x82, 1, 2, 3},
		Chain:     [][32]byte{{1, 2, 3}, {4, 5, 6}},
		SealedKey: []byte("sealed"),
		KeyType:   "ecdsa-p256",
		Names:     []string{"app.uni-a.test", "*.uni-c.test"},
		NotBefore: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:  time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC),
		AddedAt:   time.Date(2026, 3, 4, 5, 6, 7, 890, time.UTC),
	}
	got, err := decodeRecord(in.encode())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(got, in); diff != "" {
		t.Errorf("round trip (-got +want):\n%s", diff)
	}
	ne := nameEntry{KeyType: "rsa-2048", NotAfter: in.NotAfter}
	gotNE, err := decodeNameEntry(ne.encode())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(gotNE, ne); diff != "" {
		t.Errorf("name entry round trip (-got +want):\n%s", diff)
	}
	enc := in.encode()
	for n := range len(enc) {
		if _, err := decodeRecord(enc[:n]); err == nil {
			t.Errorf("decoded a record truncated to %d of %d bytes", n, len(enc))
		}
	}
}

func TestParseNameKey(t *testing.T) {
	tests := []struct {
		key            string
		wantHost, want string
		wantOK         bool
	}{
		{"certs/names/app.uni-a.test/0123456789abcdef0123", "app.uni-a.test", "0123456789abcdef0123", true},
		{"certs/names/*.uni-c.test/0123456789abcdef0123", "*.uni-c.test", "0123456789abcdef0123", true},
		{"certs/names/app.uni-a.test/nothex", "", "", false},
		{"certs/bundles/0123456789abcdef0123", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			host, id, ok := parseNameKey(tt.key)
			if host != tt.wantHost || id != tt.want || ok != tt.wantOK {
				t.Errorf("parseNameKey = %q, %q, %v; want %q, %q, %v", host, id, ok, tt.wantHost, tt.want, tt.wantOK)
			}
		})
	}
}

func FuzzDecodeRecord(f *testing.F) {
	f.Add((&record{Leaf: []byte{1}, Chain: [][32]byte{{1}}, SealedKey: []byte{2}, KeyType: "ed25519", Names: []string{"a.test"}}).encode())
	f.Add([]byte{1})
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRecord(b)
		if err != nil {
			return
		}
		again, err := decodeRecord(r.encode())
		if err != nil {
			t.Fatalf("re-decoding an encoded record: %v", err)
		}
		if diff := cmp.Diff(again, r); diff != "" {
			t.Fatalf("re-encode changed the record (-got +want):\n%s", diff)
		}
	})
}
