package certs

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
)

// KEKSize is the size in bytes of a key-encryption key.
const KEKSize = 32

// KEK is the key-encryption key that seals private keys at rest with
// AES-256-GCM. It never prints or logs its bytes.
type KEK struct {
	aead cipher.AEAD
}

// ParseKEK returns the KEK made of exactly KEKSize raw bytes.
func ParseKEK(b []byte) (*KEK, error) {
	if len(b) != KEKSize {
		return nil, fmt.Errorf("key-encryption key: is %d bytes; want exactly %d", len(b), KEKSize)
	}
	block, err := aes.NewCipher(b)
	if err != nil {
		return nil, fmt.Errorf("key-encryption key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("key-encryption key: %w", err)
	}
	return &KEK{aead: aead}, nil
}

// LoadOrCreateKEK reads the key-encryption key at path, or creates it with 32
// random bytes and mode 0600 if the file does not exist. It refuses a file of
// the wrong size or one readable or writable by group or others.
func LoadOrCreateKEK(path string) (*KEK, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	switch {
	case err == nil:
		key := make([]byte, KEKSize)
		if _, err := rand.Read(key); err != nil {
			f.Close()
			return nil, fmt.Errorf("key-encryption key %s: generating: %w", path, err)
		}
		_, werr := f.Write(key)
		serr := f.Sync()
		cerr := f.Close()
		if err := errors.Join(werr, serr, cerr); err != nil {
			os.Remove(path)
			return nil, fmt.Errorf("key-encryption key %s: writing: %w", path, err)
		}
		return ParseKEK(key)
	case !errors.Is(err, fs.ErrExist):
		return nil, fmt.Errorf("key-encryption key %s: creating: %w", path, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("key-encryption key %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("key-encryption key %s: is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("key-encryption key %s: mode %04o gives access to group or others; want 0600 (chmod 600 %s)", path, perm, path)
	}
	if fi.Size() != KEKSize {
		return nil, fmt.Errorf("key-encryption key %s: is %d bytes; want exactly %d", path, fi.Size(), KEKSize)
	}
	key, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("key-encryption key %s: %w", path, err)
	}
	k, err := ParseKEK(key)
	clear(key)
	if err != nil {
		return nil, fmt.Errorf("key-encryption key %s: %w", path, err)
	}
	return k, nil
}

// seal encrypts plaintext (a PKCS#8 private key) bound to the bundle id:
// nonce || ciphertext+tag.
func (k *KEK) seal(id string, plaintext []byte) []byte {
	ns := k.aead.NonceSize()
	out := make([]byte, ns, ns+len(plaintext)+k.aead.Overhead())
	if _, err := rand.Read(out); err != nil {
		panic("certs: reading random nonce: " + err.Error()) // crypto/rand never fails on supported platforms
	}
	return k.aead.Seal(out, out, plaintext, []byte(id))
}

// open decrypts what seal produced for the same bundle id.
func (k *KEK) open(id string, sealed []byte) ([]byte, error) {
	ns := k.aead.NonceSize()
	if len(sealed) < ns+k.aead.Overhead() {
		return nil, errors.New("sealed private key is truncated")
	}
	pt, err := k.aead.Open(nil, sealed[:ns], sealed[ns:], []byte(id))
	if err != nil {
		return nil, errors.New("cannot decrypt private key: wrong key-encryption key or corrupted record")
	}
	return pt, nil
}

// LogValue redacts the key in structured logs.
func (k *KEK) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// String redacts the key in formatted output.
func (k *KEK) String() string { return "certs.KEK([redacted])" }

// GoString redacts the key in %#v output.
func (k *KEK) GoString() string { return k.String() }
