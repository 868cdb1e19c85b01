// Package certs holds Gatehouse's TLS certificates: parsing and validating
// bundles (leaf, chain, key), storing them in the dynamic-state store with
// private keys sealed by a key-encryption key, an in-memory hostname index,
// a byte-bounded cache of decoded certificates, and the selection of a
// certificate for each TLS handshake (Manager.TLSConfig).
//
// Store layout (every key under "certs/"):
//
//	certs/bundles/<id>          a bundle record (leaf DER, chain hashes, sealed key, names, validity)
//	certs/chains/<sha256-hex>   one intermediate certificate's DER, shared by bundles
//	certs/names/<host>/<id>     the hostname index: key type and expiry of bundle <id> for <host>
//
// Startup reads only certs/names/; bundles are loaded on first use.
package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"strings"
	"time"

	"gatehouse/internal/fault"
)

// Bundle is a parsed certificate bundle: a leaf certificate, the chain that
// leads from it toward a root, and the leaf's private key.
type Bundle struct {
	// ID is the lowercase hex of the first 10 bytes of the SHA-256 of the
	// leaf's DER (20 characters). The same leaf always has the same ID.
	ID string
	// Leaf is the end-entity certificate.
	Leaf *x509.Certificate
	// Chain holds the intermediates in order: Chain[0] signed Leaf,
	// Chain[i+1] signed Chain[i].
	Chain []*x509.Certificate
	// Key is the leaf's private key.
	Key crypto.Signer
	// Names are the leaf's DNS subject alternative names, lowercased and
	// deduplicated in their original order; the subject common name only when
	// the leaf has no DNS SANs.
	Names []string
	// KeyType names the leaf's public key: "ecdsa-p256", "ecdsa-p384",
	// "ecdsa-p521", "rsa-2048" (any size), "ed25519".
	KeyType   string
	NotBefore time.Time
	NotAfter  time.Time
}

// InputError is a problem with a certificate or key supplied by a user. The
// admin API reports it as a bad request; its message names the part of the
// input and what is wrong with it.
type InputError struct {
	// Part names the input: "certificate PEM", "private key", "chain",
	// `name "a..b"`, "certificate".
	Part string
	// Problem says what is wrong with it.
	Problem string
	// Err is the underlying error, if any.
	Err error
}

// Error returns "part: problem".
func (e *InputError) Error() string { return e.Part + ": " + e.Problem }

// Is makes an InputError a fault.ErrInvalid.
func (e *InputError) Is(target error) bool { return target == fault.ErrInvalid }

// FieldName names the input part (fault.Field).
func (e *InputError) FieldName() string { return e.Part }

// Unwrap returns the underlying error.
func (e *InputError) Unwrap() error { return e.Err }

func inputErr(part, format string, args ...any) *InputError {
	return &InputError{Part: part, Problem: fmt.Sprintf(format, args...)}
}

// ParseBundle parses a leaf certificate followed by its chain from certPEM and
// the private key from keyPEM. When keyPEM is nil the key is looked for in
// certPEM (one file holding leaf, chain and key); an empty keyPEM counts as
// nil, as it arrives from JSON with the key omitted. Keys may be PKCS#8,
// PKCS#1 (RSA) or SEC1 (EC). The result is parsed but not validated; see
// Validate. Errors are *InputError.
func ParseBundle(certPEM, keyPEM []byte) (*Bundle, error) {
	var certs []*x509.Certificate
	var keyBlocks []*pem.Block
	rest := certPEM
	for n := 0; ; n++ {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		switch {
		case block.Type == "CERTIFICATE":
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, &InputError{Part: "certificate PEM", Problem: fmt.Sprintf("certificate %d: %v", len(certs), err), Err: err}
			}
			certs = append(certs, c)
		case isKeyBlock(block.Type):
			keyBlocks = append(keyBlocks, block)
		}
	}
	if len(certs) == 0 {
		return nil, inputErr("certificate PEM", "no CERTIFICATE block found")
	}
	if len(keyPEM) > 0 {
		rest := keyPEM
		found := false
		for {
			var block *pem.Block
			block, rest = pem.Decode(rest)
			if block == nil {
				break
			}
			if isKeyBlock(block.Type) {
				keyBlocks = append(keyBlocks, block)
				found = true
			}
		}
		if !found {
			return nil, inputErr("private key PEM", "no PRIVATE KEY block found")
		}
	}
	switch len(keyBlocks) {
	case 0:
		return nil, inputErr("private key PEM", "no PRIVATE KEY block found in the certificate PEM and no key PEM given")
	case 1:
	default:
		return nil, inputErr("private key PEM", "found %d private keys; want exactly one", len(keyBlocks))
	}
	key, err := parseKey(keyBlocks[0])
	if err != nil {
		return nil, err
	}
	leaf := certs[0]
	sum := sha256.Sum256(leaf.Raw)
	b := &Bundle{
		ID:        hex.EncodeToString(sum[:10]),
		Leaf:      leaf,
		Chain:     certs[1:],
		Key:       key,
		Names:     leafNames(leaf),
		KeyType:   keyType(leaf.PublicKey),
		NotBefore: leaf.NotBefore,
		NotAfter:  leaf.NotAfter,
	}
	return b, nil
}

func isKeyBlock(typ string) bool {
	switch typ {
	case "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "ENCRYPTED PRIVATE KEY":
		return true
	}
	return false
}

func parseKey(block *pem.Block) (crypto.Signer, error) {
	var (
		k   any
		err error
	)
	switch block.Type {
	case "ENCRYPTED PRIVATE KEY":
		return nil, inputErr("private key", "is encrypted with a passphrase; supply it decrypted")
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	}
	if err != nil {
		return nil, &InputError{Part: "private key", Problem: fmt.Sprintf("cannot parse %s block: %v", block.Type, err), Err: err}
	}
	s, ok := k.(crypto.Signer)
	if !ok || keyType(s.Public()) == "" {
		return nil, inputErr("private key", "unsupported key type %T; want RSA, ECDSA or Ed25519", k)
	}
	return s, nil
}

// leafNames returns the DNS SANs lowercased and deduplicated, or the common
// name when there are none.
func leafNames(c *x509.Certificate) []string {
	src := c.DNSNames
	if len(src) == 0 && c.Subject.CommonName != "" {
		src = []string{c.Subject.CommonName}
	}
	names := make([]string, 0, len(src))
	seen := make(map[string]bool, len(src))
	for _, n := range src {
		n = strings.ToLower(n)
		if !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
	}
	return names
}

// keyType names a public key, or "" if it is of an unsupported kind.
func keyType(pub any) string {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return "ecdsa-p256"
		case elliptic.P384():
			return "ecdsa-p384"
		case elliptic.P521():
			return "ecdsa-p521"
		}
	case *rsa.PublicKey:
		return fmt.Sprintf("rsa-%d", k.N.BitLen())
	case ed25519.PublicKey:
		return "ed25519"
	}
	return ""
}

// keyFamily is the algorithm family of a key type: "ecdsa", "rsa" or
// "ed25519". Bundles of one family serving one name replace each other.
func keyFamily(kt string) string {
	if i := strings.IndexByte(kt, '-'); i >= 0 {
		return kt[:i]
	}
	return kt
}

// keyRank orders key types for selection: ECDSA first, then RSA, then the rest.
func keyRank(kt string) uint8 {
	switch keyFamily(kt) {
	case "ecdsa":
		return 0
	case "rsa":
		return 1
	}
	return 2
}

// describe names a certificate in messages by its subject.
func describe(c *x509.Certificate) string {
	s := c.Subject.String()
	if s == "" {
		s = "serial " + c.SerialNumber.String()
	}
	return s
}

// publicKeysEqual reports whether a and b are the same public key.
func publicKeysEqual(a, b crypto.PublicKey) bool {
	ae, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ae.Equal(b)
}

// pemContains reports which kinds of PEM blocks data holds.
func pemContains(data []byte) (hasCert, hasKey bool) {
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return
		}
		if block.Type == "CERTIFICATE" {
			hasCert = true
		} else if isKeyBlock(block.Type) {
			hasKey = true
		}
	}
}

// isBundleID reports whether s has the form of a bundle ID.
func isBundleID(s string) bool {
	if len(s) != 20 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
