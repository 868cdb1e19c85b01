package etcd

// SetScanPageSize sets the page of a Scan without range streams, for tests
// of paging; it returns a function that restores it.
func SetScanPageSize(n int64) func() {
	old := scanPageSize
	scanPageSize = n
	return func() { scanPageSize = old }
}

// DisableStreams makes the store read as if the cluster did not implement
// range streams (etcd before 3.7), for tests of the paging fallback.
func (s *Store) DisableStreams() { s.noStream.Store(true) }
