package bolt

import (
	"fmt"
	"os"
	"time"
	"unsafe"

	"go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// DefaultReleaseMappedEvery is how often a store drops the file pages it has
// mapped from the process's resident set.
const DefaultReleaseMappedEvery = 10 * time.Second

// ReleaseMapped drops the store file's pages from this process's resident
// set (madvise MADV_DONTNEED on the read-only shared mapping). The pages
// stay in the kernel's page cache and the next read maps them again, so
// reads only cost a minor fault. bbolt reads through mmap, and each fault
// maps up to 16 neighbouring pages: a million-bundle store read at random
// would otherwise keep most of its file resident in the process.
//
// It runs inside a read transaction, which holds bbolt's mapping lock, so
// the mapping cannot be replaced (on file growth) while it is advised.
func (s *Store) ReleaseMapped() error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.calls.Done()
	return s.view(func(tx *bbolt.Tx) error {
		size := tx.Size()
		if size <= 0 {
			return nil
		}
		ps := int64(os.Getpagesize())
		size = (size + ps - 1) / ps * ps
		// Info().Data is the address of bbolt's mapping: memory outside the
		// Go heap, so reading the address as a pointer is safe.
		info := s.db.Info()
		base := *(*unsafe.Pointer)(unsafe.Pointer(&info.Data))
		data := unsafe.Slice((*byte)(base), size)
		if err := unix.Madvise(data, unix.MADV_DONTNEED); err != nil {
			return fmt.Errorf("releasing mapped pages of %s: %w", s.path, err)
		}
		return nil
	})
}

// releaseLoop calls ReleaseMapped every interval until the store closes.
func (s *Store) releaseLoop(every time.Duration) {
	defer s.watchWG.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
			if err := s.ReleaseMapped(); err != nil {
				s.log.Debug("releasing mapped pages", "err", err)
			}
		}
	}
}
