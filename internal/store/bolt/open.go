package bolt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"runtime/debug"
	"strings"
	"time"

	bbolt "go.etcd.io/bbolt"
	bberrors "go.etcd.io/bbolt/errors"
)

// ErrCorrupt is wrapped by the error Open returns for a file that is
// truncated, damaged, or not a Gatehouse store.
var ErrCorrupt = errors.New("store file is damaged or not a gatehouse store")

// ErrLocked is wrapped by the error Open returns when another process holds
// the store file.
var ErrLocked = errors.New("store file is locked")

// openDB opens and validates the bbolt file at path. It never panics: bbolt
// faults on a damaged file are converted to errors wrapping ErrCorrupt.
func openDB(path string, o Options) (*bbolt.DB, error) {
	fi, err := os.Stat(path)
	switch {
	case err == nil && fi.IsDir():
		return nil, fmt.Errorf("opening store file %s: is a directory", path)
	case err == nil && fi.Size() > 0:
		if err := checkHeader(path, fi.Size()); err != nil {
			return nil, err
		}
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("opening store file %s: %w", path, err)
	}

	var file *os.File
	bo := &bbolt.Options{
		// bbolt polls the lock every 50ms and gives up one poll early.
		Timeout:  o.OpenTimeout + 50*time.Millisecond,
		MaxSize:  int(o.QuotaBytes),
		ReadOnly: o.ReadOnly,
		OpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
			f, err := os.OpenFile(name, flag, perm)
			file = f
			return f, err
		},
	}
	var db *bbolt.DB
	err = guard(path, func() error {
		var err error
		db, err = bbolt.Open(path, 0o600, bo)
		return err
	})
	if err != nil {
		if db == nil && file != nil {
			// bbolt panicked half-way: release the file and its lock.
			_ = file.Close()
		}
		switch {
		case errors.Is(err, bberrors.ErrTimeout):
			return nil, fmt.Errorf("opening store: store file %s is locked by another process (waited %s): %w", path, o.OpenTimeout, ErrLocked)
		case errors.Is(err, bberrors.ErrInvalid), errors.Is(err, bberrors.ErrChecksum), errors.Is(err, bberrors.ErrVersionMismatch):
			return nil, fmt.Errorf("opening store file %s: not a valid store file (%v): %w", path, err, ErrCorrupt)
		}
		return nil, fmt.Errorf("opening store file %s: %w", path, err)
	}
	skip := o.SkipCheck
	if fi, err := os.Stat(path); err == nil && o.CheckMaxBytes > 0 && fi.Size() > o.CheckMaxBytes {
		skip = true
	}
	if err := guard(path, func() error { return initOrCheck(path, db, skip, o.ReadOnly) }); err != nil {
		_ = db.Close()
		return nil, err
	}
	return db, nil
}

// guard runs fn, converting panics and memory faults (bbolt reading a
// damaged mmap) into an error wrapping ErrCorrupt.
func guard(path string, fn func() error) (err error) {
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("opening store file %s: reading the file failed (%v): %w", path, r, ErrCorrupt)
		}
	}()
	return fn()
}

// bbolt's meta page: a 16-byte page header, then magic, version, page size,
// flags (4 bytes each), root bucket (16), freelist, high-water page id, txid
// and an FNV-64a checksum of the preceding 56 bytes (8 each), native-endian.
const (
	boltMagic     = 0xED0CDAED
	metaOff       = 16
	metaLen       = 64
	metaSumOffset = 56
)

type boltMeta struct {
	pageSize uint32
	pgid     uint64
	txid     uint64
}

func parseMeta(b []byte) (boltMeta, bool) {
	if len(b) < metaOff+metaLen {
		return boltMeta{}, false
	}
	m := b[metaOff : metaOff+metaLen]
	ne := binary.NativeEndian
	if ne.Uint32(m[0:]) != boltMagic {
		return boltMeta{}, false
	}
	h := fnv.New64a()
	h.Write(m[:metaSumOffset])
	if h.Sum64() != ne.Uint64(m[metaSumOffset:]) {
		return boltMeta{}, false
	}
	return boltMeta{pageSize: ne.Uint32(m[8:]), pgid: ne.Uint64(m[40:]), txid: ne.Uint64(m[48:])}, true
}

// checkHeader reads bbolt's two meta pages and refuses a file shorter than
// the size they record: bbolt would fault reading past its end.
func checkHeader(path string, size int64) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("opening store file %s: %w", path, err)
	}
	defer f.Close()
	head := make([]byte, 4096)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("opening store file %s: %w", path, err)
	}
	head = head[:n]
	best, ok := parseMeta(head)
	if ok && best.pageSize >= 512 && best.pageSize <= 1<<20 {
		second := make([]byte, metaOff+metaLen)
		if _, err := f.ReadAt(second, int64(best.pageSize)); err == nil {
			if m, ok := parseMeta(second); ok && m.txid > best.txid {
				best = m
			}
		}
	} else if m, ok2 := parseMetaAt(f, 4096); ok2 {
		best, ok = m, true
	}
	if !ok {
		// Let bbolt give its verdict (it also tries other page sizes).
		return nil
	}
	if want := int64(best.pgid) * int64(best.pageSize); size < want {
		return fmt.Errorf("opening store file %s: file is truncated: it is %d bytes, its header records %d: %w", path, size, want, ErrCorrupt)
	}
	return nil
}

func parseMetaAt(f *os.File, off int64) (boltMeta, bool) {
	b := make([]byte, metaOff+metaLen)
	if _, err := f.ReadAt(b, off); err != nil {
		return boltMeta{}, false
	}
	return parseMeta(b)
}

// initOrCheck creates the buckets of a new store (unless readOnly), or
// checks that an existing file is a Gatehouse store of a format this code
// reads and, unless skipCheck, that bbolt's structure is consistent.
func initOrCheck(path string, db *bbolt.DB, skipCheck, readOnly bool) error {
	run := db.Update
	if readOnly {
		run = db.View
	}
	err := run(func(tx *bbolt.Tx) error {
		var names []string
		if err := tx.ForEach(func(name []byte, _ *bbolt.Bucket) error {
			names = append(names, string(name))
			return nil
		}); err != nil {
			return err
		}
		if len(names) == 0 {
			if readOnly {
				return fmt.Errorf("opening store file %s read-only: the file holds no store yet", path)
			}
			return initBuckets(tx)
		}
		meta := tx.Bucket(bucketMeta)
		if meta == nil || meta.Get(metaFormat) == nil {
			return fmt.Errorf("opening store file %s: not a gatehouse store (it holds buckets %s): %w", path, strings.Join(names, ", "), ErrCorrupt)
		}
		v, err := readU64(meta.Get(metaFormat))
		if err != nil {
			return fmt.Errorf("opening store file %s: format version: %v: %w", path, err, ErrCorrupt)
		}
		if v != formatVersion {
			return fmt.Errorf("opening store file %s: store format version %d, this build reads version %d", path, v, formatVersion)
		}
		for _, name := range [][]byte{bucketKV, bucketEvents} {
			if tx.Bucket(name) == nil {
				return fmt.Errorf("opening store file %s: bucket %q is missing: %w", path, name, ErrCorrupt)
			}
		}
		for _, k := range [][]byte{metaRev, metaCompacted, metaKeys} {
			if _, err := readU64(meta.Get(k)); err != nil {
				return fmt.Errorf("opening store file %s: meta %q: %v: %w", path, k, err, ErrCorrupt)
			}
		}
		return nil
	})
	if err != nil || skipCheck {
		return err
	}
	return db.View(func(tx *bbolt.Tx) error {
		var errs []error
		for e := range tx.Check() {
			if len(errs) < 5 {
				errs = append(errs, e)
			}
		}
		if len(errs) > 0 {
			return fmt.Errorf("opening store file %s: structure check failed: %v: %w", path, errors.Join(errs...), ErrCorrupt)
		}
		return nil
	})
}

func initBuckets(tx *bbolt.Tx) error {
	for _, name := range [][]byte{bucketKV, bucketMeta, bucketEvents} {
		if _, err := tx.CreateBucket(name); err != nil {
			return fmt.Errorf("creating bucket %q: %w", name, err)
		}
	}
	meta := tx.Bucket(bucketMeta)
	for k, v := range map[string]uint64{
		string(metaFormat): formatVersion, string(metaRev): 0, string(metaCompacted): 0, string(metaKeys): 0,
	} {
		if err := meta.Put([]byte(k), u64(v)); err != nil {
			return err
		}
	}
	return nil
}

// openTimeoutDefault is how long Open waits for the file lock by default.
const openTimeoutDefault = time.Second
