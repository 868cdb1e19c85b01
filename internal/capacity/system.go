package capacity

import (
	"os"
	"runtime/metrics"
	"strconv"
	"strings"
	"syscall"
)

// OpenFiles reports open file descriptors against RLIMIT_NOFILE's soft limit.
func OpenFiles() (usage, limit int64) {
	if ents, err := os.ReadDir("/proc/self/fd"); err == nil {
		usage = int64(len(ents))
	}
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) == nil {
		limit = int64(rl.Cur)
	}
	return usage, limit
}

// Memory reports the process's resident memory against the memory it may
// use: the cgroup's limit if one is set, else the machine's total.
func Memory() (usage, limit int64) {
	if b, err := os.ReadFile("/proc/self/statm"); err == nil {
		f := strings.Fields(string(b))
		if len(f) > 1 {
			pages, _ := strconv.ParseInt(f[1], 10, 64)
			usage = pages * int64(os.Getpagesize())
		}
	}
	if b, err := os.ReadFile("/sys/fs/cgroup/memory.max"); err == nil {
		if v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil {
			return usage, v
		}
	}
	var si syscall.Sysinfo_t
	if syscall.Sysinfo(&si) == nil {
		limit = int64(si.Totalram) * int64(si.Unit)
	}
	return usage, limit
}

// GoHeap reports the Go heap in use (bytes), with no limit.
func GoHeap() (usage, limit int64) {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() == metrics.KindUint64 {
		usage = int64(s[0].Value.Uint64())
	}
	return usage, 0
}
