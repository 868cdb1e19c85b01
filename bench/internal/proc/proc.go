// Package proc reads a process's CPU time and memory from /proc, for the
// benchmarks that measure a Gatehouse server they started.
package proc

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// CPUSeconds returns the user+system CPU time of pid and its threads, 0 if
// it cannot be read.
func CPUSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}

// Status returns a field of /proc/PID/status in bytes (VmRSS:, RssAnon:,
// RssFile:, …), 0 if it cannot be read.
func Status(pid int, field string) int64 {
	return kB(fmt.Sprintf("/proc/%d/status", pid), field) * 1024
}

// PSS returns the proportional set size of pid in bytes, 0 if it cannot be
// read.
func PSS(pid int) int64 {
	return kB(fmt.Sprintf("/proc/%d/smaps_rollup", pid), "Pss:") * 1024
}

// kB returns the value in kB of field in a /proc file of "Field: N kB" lines.
func kB(path, field string) int64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field); ok {
			if fs := strings.Fields(rest); len(fs) > 0 {
				v, _ := strconv.ParseInt(fs[0], 10, 64)
				return v
			}
		}
	}
	return 0
}
