package certs

import (
	"crypto/rand"
	"errors"
)

// Seal encrypts plaintext with the KEK (AES-256-GCM) for secrets other than
// private keys, such as TLS session ticket keys: the result is nonce ||
// ciphertext || tag, bound to label, which Open must be given again. Use a
// label that cannot be a bundle ID (for example "tls/session-tickets"), so
// that a sealed value can never be passed off as another.
func (k *KEK) Seal(label string, plaintext []byte) []byte {
	ns := k.aead.NonceSize()
	out := make([]byte, ns, ns+len(plaintext)+k.aead.Overhead())
	if _, err := rand.Read(out); err != nil {
		panic("certs: reading random nonce: " + err.Error()) // crypto/rand never fails on supported platforms
	}
	return k.aead.Seal(out, out, plaintext, []byte(label))
}

// Open decrypts what Seal produced for the same label. It fails without
// detail when the KEK or the label differ or the value was altered.
func (k *KEK) Open(label string, sealed []byte) ([]byte, error) {
	ns := k.aead.NonceSize()
	if len(sealed) < ns+k.aead.Overhead() {
		return nil, errors.New("sealed value is truncated")
	}
	pt, err := k.aead.Open(nil, sealed[:ns], sealed[ns:], []byte(label))
	if err != nil {
		return nil, errors.New("cannot decrypt sealed value: wrong key-encryption key, wrong label or corrupted value")
	}
	return pt, nil
}
