package server

import "syscall"

// RaiseFileLimit raises the soft RLIMIT_NOFILE to the hard limit and returns
// both (after the change).
func RaiseFileLimit() (soft, hard uint64, err error) {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0, 0, err
	}
	if r.Cur < r.Max {
		old := r.Cur
		r.Cur = r.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
			return old, r.Max, err
		}
	}
	return r.Cur, r.Max, nil
}
