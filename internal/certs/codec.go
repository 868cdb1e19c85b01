package certs

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Store key prefixes.
const (
	prefixBundles = "certs/bundles/"
	prefixChains  = "certs/chains/"
	prefixNames   = "certs/names/"
)

func bundleKey(id string) string        { return prefixBundles + id }
func chainKey(hash string) string       { return prefixChains + hash }
func nameKey(host, id string) string    { return prefixNames + host + "/" + id }
func namePrefix(host string) string     { return prefixNames + host + "/" }
func chainKeyOf(h [32]byte) string      { return chainKey(hex.EncodeToString(h[:])) }
func idFromBundleKey(key string) string { return strings.TrimPrefix(key, prefixBundles) }

// parseNameKey splits "certs/names/<host>/<id>".
func parseNameKey(key string) (host, id string, ok bool) {
	rest, ok := strings.CutPrefix(key, prefixNames)
	if !ok {
		return "", "", false
	}
	i := strings.LastIndexByte(rest, '/')
	if i <= 0 || !isBundleID(rest[i+1:]) {
		return "", "", false
	}
	return rest[:i], rest[i+1:], true
}

const (
	recordVersion    = 1
	nameEntryVersion = 1
	// maxRecordItems bounds counts read from records, so a corrupt record
	// cannot make the decoder allocate without bound.
	maxRecordItems = 4096
)

// record is a bundle as stored under certs/bundles/<id>.
type record struct {
	Leaf      []byte     // leaf DER
	Chain     [][32]byte // SHA-256 of each intermediate's DER, in chain order
	SealedKey []byte     // PKCS#8 DER sealed by the KEK with the id as additional data
	KeyType   string
	// Names are the names the bundle currently serves: the leaf's names less
	// those that a later bundle took over (see Manager.Add).
	Names     []string
	NotBefore time.Time
	NotAfter  time.Time
	AddedAt   time.Time
}

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

func appendString(b []byte, v string) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

func (r *record) encode() []byte {
	n := 64 + len(r.Leaf) + 32*len(r.Chain) + len(r.SealedKey) + len(r.KeyType)
	for _, s := range r.Names {
		n += len(s) + 2
	}
	b := make([]byte, 0, n)
	b = append(b, recordVersion)
	b = appendBytes(b, r.Leaf)
	b = binary.AppendUvarint(b, uint64(len(r.Chain)))
	for _, h := range r.Chain {
		b = append(b, h[:]...)
	}
	b = appendBytes(b, r.SealedKey)
	b = appendString(b, r.KeyType)
	b = binary.AppendUvarint(b, uint64(len(r.Names)))
	for _, s := range r.Names {
		b = appendString(b, s)
	}
	b = binary.AppendVarint(b, r.NotBefore.Unix())
	b = binary.AppendVarint(b, r.NotAfter.Unix())
	b = binary.AppendVarint(b, r.AddedAt.UnixNano())
	return b
}

// decoder reads the fields of a record; the first error sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("truncated or corrupt %s", what)
	}
}

func (d *decoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint(what string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail(what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes(what string) []byte {
	n := d.uvarint(what)
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail(what)
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) count(what string) int {
	n := d.uvarint(what)
	if n > maxRecordItems {
		d.fail(what)
		return 0
	}
	return int(n)
}

func decodeRecord(b []byte) (*record, error) {
	if len(b) == 0 {
		return nil, errors.New("empty bundle record")
	}
	if b[0] != recordVersion {
		return nil, fmt.Errorf("bundle record version %d is not supported", b[0])
	}
	d := &decoder{b: b[1:]}
	r := &record{}
	r.Leaf = d.bytes("leaf")
	if n := d.count("chain count"); n > 0 {
		if n*32 > len(d.b) {
			d.fail("chain hashes")
		} else {
			r.Chain = make([][32]byte, n)
			for i := range r.Chain {
				copy(r.Chain[i][:], d.b[:32])
				d.b = d.b[32:]
			}
		}
	}
	r.SealedKey = d.bytes("sealed key")
	r.KeyType = string(d.bytes("key type"))
	if n := d.count("name count"); n > 0 && d.err == nil {
		r.Names = make([]string, 0, min(n, len(d.b)))
		for range n {
			r.Names = append(r.Names, string(d.bytes("name")))
		}
	}
	r.NotBefore = time.Unix(d.varint("not-before"), 0).UTC()
	r.NotAfter = time.Unix(d.varint("not-after"), 0).UTC()
	r.AddedAt = time.Unix(0, d.varint("added-at")).UTC()
	if d.err != nil {
		return nil, fmt.Errorf("bundle record: %w", d.err)
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("bundle record: %d trailing bytes", len(d.b))
	}
	return r, nil
}

// nameEntry is the value under certs/names/<host>/<id>.
type nameEntry struct {
	KeyType  string
	NotAfter time.Time
}

func (e nameEntry) encode() []byte {
	b := make([]byte, 0, 2+len(e.KeyType)+10)
	b = append(b, nameEntryVersion)
	b = appendString(b, e.KeyType)
	return binary.AppendVarint(b, e.NotAfter.Unix())
}

func decodeNameEntry(b []byte) (nameEntry, error) {
	if len(b) == 0 || b[0] != nameEntryVersion {
		return nameEntry{}, errors.New("name index entry: unsupported version")
	}
	d := &decoder{b: b[1:]}
	e := nameEntry{KeyType: internKeyType(d.bytes("key type"))}
	e.NotAfter = time.Unix(d.varint("not-after"), 0).UTC()
	if d.err != nil {
		return nameEntry{}, fmt.Errorf("name index entry: %w", d.err)
	}
	return e, nil
}

// knownKeyTypes are the key types of most bundles; decoding a name entry
// shares these strings instead of allocating one per entry.
var knownKeyTypes = []string{"ecdsa-p256", "ecdsa-p384", "ecdsa-p521", "rsa-2048", "rsa-3072", "rsa-4096", "ed25519"}

func internKeyType(b []byte) string {
	for _, kt := range knownKeyTypes {
		if string(b) == kt {
			return kt
		}
	}
	return string(b)
}
