package bolt

// SetQuota changes Options.QuotaBytes of the open store (0: no quota): the
// next write that would grow the file beyond it is refused. A quota below
// the file's size refuses every write that grows the file and removes
// nothing.
func (s *Store) SetQuota(bytes int64) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.calls.Done()
	bytes = max(bytes, 0)
	// Every use of db holds dbMu for reading, bbolt's allocator included
	// (inside commit), so the handle's MaxSize changes between writes.
	s.dbMu.Lock()
	defer s.dbMu.Unlock()
	s.opts.QuotaBytes = bytes
	if s.db != nil {
		s.db.MaxSize = int(bytes)
	}
	return nil
}

// quota returns the quota in force.
func (s *Store) quota() int64 {
	s.dbMu.RLock()
	defer s.dbMu.RUnlock()
	return s.opts.QuotaBytes
}
