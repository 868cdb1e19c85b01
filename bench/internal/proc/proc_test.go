package proc

import (
	"os"
	"testing"
	"time"
)

// TestSelf reads this test process, which has used some CPU and memory.
func TestSelf(t *testing.T) {
	pid := os.Getpid()
	// Burn CPU for a while: the kernel counts it in ticks of 10 ms.
	x := 0
	for start := time.Now(); time.Since(start) < 100*time.Millisecond; {
		x++
	}
	_ = x
	if got := CPUSeconds(pid); got <= 0 {
		t.Errorf("CPUSeconds = %v, want > 0", got)
	}
	if got := Status(pid, "VmRSS:"); got < 1<<20 {
		t.Errorf("VmRSS = %d bytes, want at least 1 MiB", got)
	}
	if got := PSS(pid); got <= 0 {
		t.Errorf("PSS = %d, want > 0", got)
	}
	if got := Status(pid, "NoSuchField:"); got != 0 {
		t.Errorf("missing field = %d, want 0", got)
	}
	if got := CPUSeconds(-1); got != 0 {
		t.Errorf("CPUSeconds of no process = %v, want 0", got)
	}
}
