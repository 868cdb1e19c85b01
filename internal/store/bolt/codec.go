package bolt

import (
	"encoding/binary"
	"errors"
	"fmt"

	"gatehouse/internal/store"
)

// On-disk layout.
//
//	bucket "kv":     key → 8-byte big-endian modrev ‖ value
//	bucket "meta":   "format" → 8-byte format version
//	                 "rev" → current revision, "compacted" → newest revision
//	                 whose events were dropped, "keys" → number of live keys,
//	                 "eventbytes" → encoded size of the events kept (absent
//	                 in files written before it was kept: counts from 0)
//	bucket "events": 8-byte big-endian rev → the events of that transaction
var (
	bucketKV     = []byte("kv")
	bucketMeta   = []byte("meta")
	bucketEvents = []byte("events")

	metaFormat    = []byte("format")
	metaRev       = []byte("rev")
	metaCompacted = []byte("compacted")
	metaKeys      = []byte("keys")
	// metaEventBytes is optional; no format change.
	metaEventBytes = []byte("eventbytes")
)

// formatVersion is the layout version this code reads and writes.
const formatVersion = 1

func u64(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

func revKey(rev int64) []byte { return u64(uint64(rev)) }

// readU64 decodes an 8-byte counter; a missing counter reads as 0.
func readU64(b []byte) (uint64, error) {
	switch len(b) {
	case 0:
		return 0, nil
	case 8:
		return binary.BigEndian.Uint64(b), nil
	}
	return 0, fmt.Errorf("counter of %d bytes, want 8", len(b))
}

// encodeKV returns modrev ‖ value in a fresh buffer owned by the caller.
func encodeKV(modRev int64, value []byte) []byte {
	b := make([]byte, 8+len(value))
	binary.BigEndian.PutUint64(b, uint64(modRev))
	copy(b[8:], value)
	return b
}

// decodeKV copies a stored kv value out of a bbolt transaction.
func decodeKV(key string, b []byte) (store.KV, error) {
	if len(b) < 8 {
		return store.KV{}, fmt.Errorf("decoding key %q: stored value of %d bytes is shorter than its header", key, len(b))
	}
	v := make([]byte, len(b)-8)
	copy(v, b[8:])
	return store.KV{Key: key, Value: v, ModRev: int64(binary.BigEndian.Uint64(b))}, nil
}

func modRevOf(b []byte) int64 {
	if len(b) < 8 {
		return -1
	}
	return int64(binary.BigEndian.Uint64(b))
}

// encodeEvents encodes the events of one transaction:
// count, then per event: type, key length, key, value length, value.
func encodeEvents(evs []store.Event) []byte {
	n := binary.MaxVarintLen64
	for _, e := range evs {
		n += 1 + 2*binary.MaxVarintLen64 + len(e.KV.Key) + len(e.KV.Value)
	}
	b := make([]byte, 0, n)
	b = binary.AppendUvarint(b, uint64(len(evs)))
	for _, e := range evs {
		b = append(b, byte(e.Type))
		b = binary.AppendUvarint(b, uint64(len(e.KV.Key)))
		b = append(b, e.KV.Key...)
		b = binary.AppendUvarint(b, uint64(len(e.KV.Value)))
		b = append(b, e.KV.Value...)
	}
	return b
}

var errShortEvents = errors.New("truncated event record")

// decodeEvents decodes (copying) the events recorded at rev.
func decodeEvents(rev int64, b []byte) ([]store.Event, error) {
	cnt, n := binary.Uvarint(b)
	if n <= 0 || cnt > uint64(len(b)) {
		return nil, fmt.Errorf("decoding events of revision %d: %w", rev, errShortEvents)
	}
	b = b[n:]
	evs := make([]store.Event, 0, cnt)
	for range cnt {
		if len(b) < 1 {
			return nil, fmt.Errorf("decoding events of revision %d: %w", rev, errShortEvents)
		}
		typ := store.EventType(b[0])
		b = b[1:]
		key, rest, ok := field(b)
		if !ok {
			return nil, fmt.Errorf("decoding events of revision %d: %w", rev, errShortEvents)
		}
		val, rest, ok := field(rest)
		if !ok {
			return nil, fmt.Errorf("decoding events of revision %d: %w", rev, errShortEvents)
		}
		b = rest
		e := store.Event{Type: typ, KV: store.KV{Key: string(key), ModRev: rev}}
		switch typ {
		case store.EventPut:
			e.KV.Value = append(make([]byte, 0, len(val)), val...)
		case store.EventDelete:
		default:
			return nil, fmt.Errorf("decoding events of revision %d: unknown event type %d", rev, typ)
		}
		evs = append(evs, e)
	}
	return evs, nil
}

func field(b []byte) (f, rest []byte, ok bool) {
	l, n := binary.Uvarint(b)
	if n <= 0 || l > uint64(len(b)-n) {
		return nil, nil, false
	}
	return b[n : n+int(l)], b[n+int(l):], true
}
