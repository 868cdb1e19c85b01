package proxy

import (
	"crypto/rand"
	"encoding/base32"
	"strconv"
	"sync/atomic"
)

// maxRequestIDLen bounds an incoming X-Request-Id that is kept.
const maxRequestIDLen = 128

// idGen makes request ids: a random per-process prefix and a counter, so
// an id costs one small allocation and no system call, and ids from
// different nodes and restarts do not collide.
type idGen struct {
	prefix string
	n      atomic.Uint64
}

func newIDGen() *idGen {
	var b [10]byte
	rand.Read(b[:]) // never fails (crypto/rand.Read panics instead)
	return &idGen{prefix: base32.HexEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]) + "-"}
}

func (g *idGen) next() string {
	var buf [48]byte
	b := append(buf[:0], g.prefix...)
	b = strconv.AppendUint(b, g.n.Add(1), 36)
	return string(b)
}

// saneID reports whether an incoming request id is kept: 1 to 128 bytes
// of letters, digits and -_.:+/=@.
func saneID(id string) bool {
	if len(id) == 0 || len(id) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-', c == '_', c == '.', c == ':', c == '+', c == '/', c == '=', c == '@':
		default:
			return false
		}
	}
	return true
}
