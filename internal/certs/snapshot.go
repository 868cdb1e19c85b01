package certs

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// The local index snapshot: a node on a remote store keeps the hostname
// index and the revision it reflects in a file, so that a restart reads it
// instead of the whole certs/names/ prefix, then follows the store from
// that revision.
//
// Format, version 1 (integers are varints as in encoding/binary):
//
//	"GHIDX" version(1 byte)
//	identity(string) rev(varint) taken(varint, unix ns) hosts(uvarint)
//	per host: name(string) entries(uvarint)
//	  per entry: id(10 bytes) keyType(byte index into knownKeyTypes, or
//	    0xff and a string) notAfter(varint, unix s)
//	sha256 of everything before (32 bytes)
const (
	snapshotMagic   = "GHIDX"
	snapshotVersion = 1
	snapshotFile    = "certs-index.snap"
	idBytes         = 10 // a bundle id is 20 hex digits
)

// snapshot is a decoded index snapshot.
type snapshot struct {
	identity string
	rev      int64
	taken    time.Time
	b        *indexBuilder
}

// snapshotHost is one name of the index and its entries, as captured.
type snapshotHost struct {
	name string
	es   []entry // immutable: the index replaces slices, never modifies them
}

// captureIndex copies the index's (name, entries) pairs; the caller holds
// pmu so that the copy matches watchRev.
func (ix *index) capture() []snapshotHost {
	var out []snapshotHost
	for i := range ix.shards {
		sh := &ix.shards[i]
		sh.mu.RLock()
		if out == nil {
			out = make([]snapshotHost, 0, len(sh.m)*indexShards*9/8)
		}
		for name, es := range sh.m {
			out = append(out, snapshotHost{name: name, es: es})
		}
		sh.mu.RUnlock()
	}
	return out
}

// writeSnapshot writes hosts atomically to dir/certs-index.snap: a temporary
// file, synced, then renamed over the old one.
func writeSnapshot(dir, identity string, rev int64, taken time.Time, hosts []snapshotHost) (int64, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return 0, fmt.Errorf("writing index snapshot: %w", err)
	}
	f, err := os.CreateTemp(dir, snapshotFile+".tmp*")
	if err != nil {
		return 0, fmt.Errorf("writing index snapshot: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a successful rename, a no-op
	h := sha256.New()
	w := bufio.NewWriterSize(io.MultiWriter(f, h), 1<<20)
	var buf []byte
	buf = append(buf, snapshotMagic...)
	buf = append(buf, snapshotVersion)
	buf = appendString(buf, identity)
	buf = binary.AppendVarint(buf, rev)
	buf = binary.AppendVarint(buf, taken.UnixNano())
	buf = binary.AppendUvarint(buf, uint64(len(hosts)))
	w.Write(buf)
	var idb [idBytes]byte
	for _, hs := range hosts {
		buf = appendString(buf[:0], hs.name)
		buf = binary.AppendUvarint(buf, uint64(len(hs.es)))
		for _, e := range hs.es {
			if _, err := hex.Decode(idb[:], []byte(e.id)); err != nil {
				return 0, fmt.Errorf("writing index snapshot: bundle id %q: %w", e.id, err)
			}
			buf = append(buf, idb[:]...)
			if k := keyTypeCode(e.keyType); k != 0xff {
				buf = append(buf, k)
			} else {
				buf = append(buf, 0xff)
				buf = appendString(buf, e.keyType)
			}
			buf = binary.AppendVarint(buf, e.notAfter.Unix())
		}
		w.Write(buf)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return 0, fmt.Errorf("writing index snapshot: %w", err)
	}
	sum := h.Sum(nil)
	if _, err := f.Write(sum); err != nil {
		f.Close()
		return 0, fmt.Errorf("writing index snapshot: %w", err)
	}
	size, _ := f.Seek(0, io.SeekCurrent)
	if err := f.Sync(); err != nil {
		f.Close()
		return 0, fmt.Errorf("writing index snapshot: %w", err)
	}
	if err := f.Close(); err != nil {
		return 0, fmt.Errorf("writing index snapshot: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, snapshotFile)); err != nil {
		return 0, fmt.Errorf("writing index snapshot: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync() // make the rename durable
		d.Close()
	}
	return size, nil
}

func keyTypeCode(kt string) byte {
	for i, k := range knownKeyTypes {
		if k == kt {
			return byte(i)
		}
	}
	return 0xff
}

// errNoSnapshot is returned by readSnapshot when there is no file.
var errNoSnapshot = errors.New("no index snapshot")

// readSnapshot reads dir/certs-index.snap. A missing file is errNoSnapshot;
// a damaged one, of another version or cut short, is an error saying so.
func readSnapshot(dir string) (*snapshot, error) {
	data, err := os.ReadFile(filepath.Join(dir, snapshotFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, errNoSnapshot
	}
	if err != nil {
		return nil, err
	}
	head := len(snapshotMagic) + 1
	if len(data) < head+sha256.Size || string(data[:len(snapshotMagic)]) != snapshotMagic {
		return nil, errors.New("not an index snapshot")
	}
	if v := data[len(snapshotMagic)]; v != snapshotVersion {
		return nil, fmt.Errorf("index snapshot version %d is not supported (want %d)", v, snapshotVersion)
	}
	body, sum := data[:len(data)-sha256.Size], data[len(data)-sha256.Size:]
	if got := sha256.Sum256(body); string(got[:]) != string(sum) {
		return nil, errors.New("checksum mismatch")
	}
	d := &decoder{b: body[head:]}
	s := &snapshot{}
	s.identity = string(d.bytes("identity"))
	s.rev = d.varint("revision")
	s.taken = time.Unix(0, d.varint("time"))
	nhosts := d.uvarint("host count")
	if d.err == nil && nhosts > uint64(len(d.b)) {
		d.fail("host count")
	}
	if d.err != nil {
		return nil, d.err
	}
	s.b = newIndexBuilder(int(nhosts))
	for range nhosts {
		name := string(d.bytes("name"))
		n := d.count("entry count")
		if d.err != nil {
			break
		}
		es := make([]entry, 0, n)
		for range n {
			if len(d.b) < idBytes+1 {
				d.fail("entry")
				break
			}
			id := hex.EncodeToString(d.b[:idBytes])
			c := d.b[idBytes]
			d.b = d.b[idBytes+1:]
			var kt string
			switch {
			case c == 0xff:
				kt = internKeyType(d.bytes("key type"))
			case int(c) < len(knownKeyTypes):
				kt = knownKeyTypes[c]
			default:
				d.fail("key type")
			}
			na := d.varint("not-after")
			if d.err != nil {
				break
			}
			es = append(es, entry{id: id, keyType: kt, notAfter: time.Unix(na, 0).UTC()})
		}
		if d.err != nil {
			break
		}
		if len(es) > 0 {
			s.b.add(name, es)
		}
	}
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%d trailing bytes", len(d.b))
	}
	return s, nil
}
