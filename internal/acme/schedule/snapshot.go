package schedule

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
)

// Snapshot format (all integers unsigned varints):
//
//	"GHRQ" 0x01            magic and version
//	count
//	count × (len, name bytes, unix seconds)
//	crc32 (IEEE, 4 bytes little-endian) of everything before it
//
// About 33 bytes per name of 27 bytes: 1,000,000 names are about 33 MB.
const snapshotMagic = "GHRQ\x01"

// ErrSnapshot is wrapped by every error Decode returns for a malformed
// snapshot (as opposed to an error reading it).
var ErrSnapshot = errors.New("malformed schedule snapshot")

// Encode writes a snapshot of the queue to w. The queue stays usable
// meanwhile only for readers: Encode holds the queue's lock while writing,
// so write to a buffer or file, not to a slow peer.
func (q *Queue) Encode(w io.Writer) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	h := crc32.NewIEEE()
	bw := bufio.NewWriterSize(io.MultiWriter(w, h), 64<<10)
	var buf [binary.MaxVarintLen64]byte
	bw.WriteString(snapshotMagic)
	bw.Write(binary.AppendUvarint(buf[:0], uint64(len(q.heap))))
	for _, e := range q.heap {
		name := q.nameBytes(e.id)
		bw.Write(binary.AppendUvarint(buf[:0], uint64(len(name))))
		bw.Write(name)
		bw.Write(binary.AppendUvarint(buf[:0], uint64(e.at)))
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("writing schedule snapshot: %w", err)
	}
	var sum [4]byte
	binary.LittleEndian.PutUint32(sum[:], h.Sum32())
	if _, err := w.Write(sum[:]); err != nil {
		return fmt.Errorf("writing schedule snapshot: %w", err)
	}
	return nil
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrSnapshot, fmt.Sprintf(format, args...))
}

// Decode reads a snapshot written by Encode into a new queue. A truncated,
// corrupted (checksum) or inconsistent snapshot (a name twice, a name too
// long, a time out of range) is an error wrapping ErrSnapshot; nothing is
// half-loaded. The snapshot is read whole into memory first (about 33 MB
// for a million names) and checked before it is parsed.
func Decode(r io.Reader) (*Queue, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("reading schedule snapshot: %w", err)
	}
	if len(data) < len(snapshotMagic)+1+4 {
		return nil, malformed("truncated")
	}
	if string(data[:len(snapshotMagic)]) != snapshotMagic {
		return nil, malformed("bad magic %q", data[:len(snapshotMagic)])
	}
	body, sum := data[:len(data)-4], binary.LittleEndian.Uint32(data[len(data)-4:])
	if got := crc32.ChecksumIEEE(body); got != sum {
		return nil, malformed("checksum %08x, want %08x (truncated or corrupted)", got, sum)
	}
	p := body[len(snapshotMagic):]
	uvarint := func() (uint64, bool) {
		v, n := binary.Uvarint(p)
		if n <= 0 {
			return 0, false
		}
		p = p[n:]
		return v, true
	}
	count, ok := uvarint()
	if !ok {
		return nil, malformed("truncated count")
	}
	if count > uint64(len(p))/2 { // each entry takes at least 2 bytes
		return nil, malformed("count %d out of range", count)
	}
	q := New()
	q.heap = make([]entry, 0, count)
	q.off = make([]uint32, 0, count)
	q.pos = make([]int32, 0, count)
	q.arena = make([]byte, 0, len(p))
	size := len(q.table)
	for int(count)*8 > size*5 {
		size *= 2
	}
	q.rehash(size)
	for i := uint64(0); i < count; i++ {
		n, ok := uvarint()
		if !ok {
			return nil, malformed("entry %d: truncated", i)
		}
		if n > MaxNameLen {
			return nil, malformed("entry %d: name of %d bytes is longer than %d", i, n, MaxNameLen)
		}
		if n > uint64(len(p)) {
			return nil, malformed("entry %d: truncated", i)
		}
		name := p[:n:n]
		p = p[n:]
		at, ok := uvarint()
		if !ok {
			return nil, malformed("entry %d: truncated", i)
		}
		if at > math.MaxUint32 {
			return nil, malformed("entry %d: time %d out of range", i, at)
		}
		q.makeRoom()
		slot, _, tag, dup := q.findBytes(name)
		if dup {
			return nil, malformed("entry %d: name %q appears twice", i, name)
		}
		id := appendName(q, name)
		q.put(slot, id, tag)
		q.pos[id] = int32(len(q.heap))
		q.heap = append(q.heap, entry{at: uint32(at), id: id})
	}
	if len(p) != 0 {
		return nil, malformed("%d bytes after the last entry", len(p))
	}
	q.heapify()
	return q, nil
}
