package certs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"
)

// DefaultDiskCacheBytes bounds the local bundle cache when
// Options.DiskCacheBytes is zero.
const DefaultDiskCacheBytes = 512 << 20

const diskCacheFile = "certs-bundles.db"

var (
	dcMeta    = []byte("meta")
	dcRecords = []byte("records") // id -> seq(8) + record as stored (key sealed)
	dcOrder   = []byte("order")   // seq(8) -> id, oldest first
	dcChains  = []byte("chains")  // chain key -> DER
	dcIdent   = []byte("identity")
	dcBytes   = []byte("bytes")
)

// diskCache keeps bundle records read from a remote store in a local bbolt
// file, exactly as stored (private keys stay sealed by the KEK), and the
// intermediates they reference. It is bounded in bytes: the oldest records
// are dropped first. Writes are applied in the background in batches; the
// file is a cache, so it is not synced on every write, and a damaged file
// is replaced by an empty one.
type diskCache struct {
	db    *bbolt.DB
	limit atomic.Int64 // bytes; a lowered bound applies at the next write
	log   *slog.Logger

	ops  chan dcOp
	done chan struct{}
	// smu guards closed; senders on ops hold it for reading.
	smu    sync.RWMutex
	closed bool

	// mu guards size and seq, which the writer alone changes.
	mu   sync.Mutex
	size int64
	seq  uint64
}

type dcOp struct {
	id     string // record to put (rec != nil) or drop
	rec    []byte
	chains map[string][]byte
	flush  chan struct{} // closed once the ops before it are written
}

// openDiskCache opens (or creates) the cache in dir for the store named
// identity; a cache of another store ("" means not known yet: keep it) is
// emptied.
func openDiskCache(dir, identity string, limit int64, log *slog.Logger) (*diskCache, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("local bundle cache: %w", err)
	}
	path := dir + "/" + diskCacheFile
	clean := path + cleanSuffix
	_, statErr := os.Stat(path)
	existed := statErr == nil
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second, NoFreelistSync: true})
	if err != nil && !errors.Is(err, bbolt.ErrTimeout) {
		log.Warn("local bundle cache unreadable; starting it anew", "path", path, "err", err)
		os.Remove(path)
		db, err = bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second, NoFreelistSync: true})
	}
	if err != nil {
		return nil, fmt.Errorf("local bundle cache %s: %w", path, err)
	}
	// The cache is written without fsync, so a file its last user did not
	// close (a crash, a power loss) may hold torn pages that bbolt would
	// only notice, by panicking, when it reads them. Such a file is
	// discarded: it is only a cache. This process holds the file's lock now,
	// so its previous user has closed it or died.
	if _, err := os.Stat(clean); existed && err != nil {
		log.Warn("local bundle cache was not closed cleanly (crash or power loss); starting it anew", "path", path)
		db.Close()
		os.Remove(path)
		db, err = bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second, NoFreelistSync: true})
		if err != nil {
			return nil, fmt.Errorf("local bundle cache %s: %w", path, err)
		}
	}
	if err := os.Remove(clean); err != nil && !errors.Is(err, os.ErrNotExist) {
		db.Close()
		return nil, fmt.Errorf("local bundle cache %s: %w", clean, err)
	}
	syncDir(dir)
	db.NoSync = true
	c := &diskCache{db: db, log: log, ops: make(chan dcOp, 1024), done: make(chan struct{})}
	c.limit.Store(limit)
	err = db.Update(func(tx *bbolt.Tx) error {
		meta := tx.Bucket(dcMeta)
		if meta != nil && identity != "" && string(meta.Get(dcIdent)) != identity {
			if old := meta.Get(dcIdent); old != nil {
				log.Info("local bundle cache is of another store; emptying it", "cached", string(old), "store", identity)
			}
			for _, b := range [][]byte{dcMeta, dcRecords, dcOrder, dcChains} {
				if tx.Bucket(b) != nil {
					if err := tx.DeleteBucket(b); err != nil {
						return err
					}
				}
			}
			meta = nil
		}
		for _, b := range [][]byte{dcMeta, dcRecords, dcOrder, dcChains} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		meta = tx.Bucket(dcMeta)
		if identity != "" {
			if err := meta.Put(dcIdent, []byte(identity)); err != nil {
				return err
			}
		}
		if v := meta.Get(dcBytes); len(v) == 8 {
			c.size = int64(binary.BigEndian.Uint64(v))
		}
		if k, _ := tx.Bucket(dcOrder).Cursor().Last(); len(k) == 8 {
			c.seq = binary.BigEndian.Uint64(k)
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("local bundle cache %s: %w", path, err)
	}
	go c.writer()
	return c, nil
}

// record returns the stored record of bundle id, if cached.
func (c *diskCache) record(id string) ([]byte, bool) {
	var out []byte
	c.db.View(func(tx *bbolt.Tx) error {
		if v := tx.Bucket(dcRecords).Get([]byte(id)); len(v) > 8 {
			out = bytes.Clone(v[8:])
		}
		return nil
	})
	return out, out != nil
}

// chain returns the DER stored under a chain key, if cached.
func (c *diskCache) chain(key string) ([]byte, bool) {
	var out []byte
	c.db.View(func(tx *bbolt.Tx) error {
		if v := tx.Bucket(dcChains).Get([]byte(key)); v != nil {
			out = bytes.Clone(v)
		}
		return nil
	})
	return out, out != nil
}

// put caches a record and its chains in the background; when the writer
// is behind, the record is not cached.
func (c *diskCache) put(id string, rec []byte, chains map[string][]byte) {
	c.smu.RLock()
	defer c.smu.RUnlock()
	if c.closed {
		return
	}
	select {
	case c.ops <- dcOp{id: id, rec: rec, chains: chains}:
	default:
	}
}

// drop removes the record of a bundle that is no longer installed.
func (c *diskCache) drop(id string) {
	c.smu.RLock()
	defer c.smu.RUnlock()
	if !c.closed {
		c.ops <- dcOp{id: id}
	}
}

// flush waits until the operations queued before it are written.
func (c *diskCache) flush() {
	ch := make(chan struct{})
	c.smu.RLock()
	if c.closed {
		c.smu.RUnlock()
		return
	}
	c.ops <- dcOp{flush: ch}
	c.smu.RUnlock()
	<-ch
}

// clearRecords drops every cached record (chains, stored by content hash,
// stay): a full relisting of the index breaks the continuity with the
// changes the cache has followed, since a bundle removed and added again
// under the same id may have another chain.
func (c *diskCache) clearRecords() error {
	c.flush()
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.db.Update(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{dcRecords, dcOrder} {
			if err := tx.DeleteBucket(b); err != nil {
				return err
			}
			if _, err := tx.CreateBucket(b); err != nil {
				return err
			}
		}
		c.size = 0
		return tx.Bucket(dcMeta).Put(dcBytes, binary.BigEndian.AppendUint64(nil, 0))
	})
}

// close stops the writer after the queued writes and closes the file.
func (c *diskCache) close() error {
	c.smu.Lock()
	if c.closed {
		c.smu.Unlock()
		return nil
	}
	c.closed = true
	close(c.ops)
	c.smu.Unlock()
	<-c.done
	if err := c.db.Sync(); err != nil {
		c.db.Close()
		return err
	}
	path := c.db.Path()
	if err := c.db.Close(); err != nil {
		return err
	}
	// Mark the file as closed cleanly (see openDiskCache).
	f, err := os.OpenFile(path+cleanSuffix, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("local bundle cache: marking it closed: %w", err)
	}
	err = errors.Join(f.Sync(), f.Close())
	syncDir(filepath.Dir(path))
	return err
}

// cleanSuffix names the file that says the cache was closed cleanly.
const cleanSuffix = ".clean"

// syncDir makes a directory's entries durable (best effort).
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

func (c *diskCache) writer() {
	defer close(c.done)
	for op := range c.ops {
		batch := []dcOp{op}
	more:
		for len(batch) < 256 {
			select {
			case o, ok := <-c.ops:
				if !ok {
					break more
				}
				batch = append(batch, o)
			default:
				break more
			}
		}
		c.mu.Lock()
		err := c.db.Update(func(tx *bbolt.Tx) error { return c.applyLocked(tx, batch) })
		c.mu.Unlock()
		if err != nil {
			c.log.Warn("writing the local bundle cache", "err", err)
		}
		for _, o := range batch {
			if o.flush != nil {
				close(o.flush)
			}
		}
	}
}

func (c *diskCache) applyLocked(tx *bbolt.Tx, batch []dcOp) error {
	recs, order, chains := tx.Bucket(dcRecords), tx.Bucket(dcOrder), tx.Bucket(dcChains)
	size := c.size
	del := func(id []byte) error {
		v := recs.Get(id)
		if len(v) < 8 {
			return nil
		}
		size -= int64(len(id) + len(v))
		if err := order.Delete(v[:8]); err != nil {
			return err
		}
		return recs.Delete(id)
	}
	for _, o := range batch {
		if o.flush != nil {
			continue
		}
		id := []byte(o.id)
		if err := del(id); err != nil {
			return err
		}
		if o.rec == nil {
			continue
		}
		for k, der := range o.chains {
			if chains.Get([]byte(k)) == nil {
				if err := chains.Put([]byte(k), der); err != nil {
					return err
				}
				size += int64(len(k) + len(der))
			}
		}
		c.seq++
		seq := binary.BigEndian.AppendUint64(nil, c.seq)
		v := append(seq[:8:8], o.rec...)
		if err := recs.Put(id, v); err != nil {
			return err
		}
		if err := order.Put(seq, id); err != nil {
			return err
		}
		size += int64(len(id) + len(v))
	}
	// Over the bound: drop the oldest records down to 90% of it.
	if limit := c.limit.Load(); size > limit {
		cur := order.Cursor()
		for k, id := cur.First(); k != nil && size > limit*9/10; k, id = cur.First() {
			if err := del(bytes.Clone(id)); err != nil {
				return err
			}
		}
	}
	c.size = size
	return tx.Bucket(dcMeta).Put(dcBytes, binary.BigEndian.AppendUint64(nil, uint64(size)))
}

// bytes returns the bytes of records and chains cached.
func (c *diskCache) bytes() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.size
}

// LocalCacheStats reports the bytes of sealed bundle records and chains
// kept in the node's local on-disk cache and its limit; ok is false when
// the node keeps none (an embedded store, or no cache directory).
func (m *Manager) LocalCacheStats() (bytes, limit int64, ok bool) {
	d := m.disk()
	if d == nil {
		return 0, 0, false
	}
	return d.bytes(), d.limit.Load(), true
}

// SetLocalCacheBytes changes the bound of the local bundle cache (0:
// DefaultDiskCacheBytes); a lower bound is met at the cache's next write.
func (m *Manager) SetLocalCacheBytes(n int64) {
	if n <= 0 {
		n = DefaultDiskCacheBytes
	}
	m.diskLimit.Store(n)
	if d := m.disk(); d != nil {
		d.limit.Store(n)
	}
}
