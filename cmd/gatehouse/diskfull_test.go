package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"gatehouse/internal/admin"
)

// diskFullChild is set in the environment of the re-executed test binary.
const diskFullChild = "GATEHOUSE_TEST_DISK_FULL_CHILD"

// TestDiskFull fills the real file system under a node's data directory: a
// 4 MiB tmpfs. Mounting one needs a mount namespace, so the test binary runs
// this test again in a new user and mount namespace (no privilege needed
// where the kernel allows user namespaces, as Debian's does), where the
// mount is private and ends with the process. A write to the full disk gets
// 507 disk_full naming the cause and is logged; serving goes on; freeing
// space lets the next write through. The parent checks the node's log.
func TestDiskFull(t *testing.T) {
	if os.Getenv(diskFullChild) == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestDiskFull$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), diskFullChild+"=1")
		cmd.SysProcAttr = &syscall.SysProcAttr{
			Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
			UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
			GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
		}
		out, err := cmd.CombinedOutput()
		t.Logf("in a new mount namespace:\n%s", out)
		if err != nil || !bytes.Contains(out, []byte("--- PASS: TestDiskFull")) {
			t.Fatalf("disk-full test in its namespace: %v", err)
		}
		// The node's log (written through t.Log) records the refusal.
		if !bytes.Contains(out, []byte(`level=ERROR msg="admin request failed"`)) || !bytes.Contains(out, []byte("no space left on device")) {
			t.Fatal("the refused write is not in the node's log")
		}
		return
	}
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		t.Fatalf("making mounts private: %v", err)
	}
	mnt, err := os.MkdirTemp("", "gatehouse-diskfull-")
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=4m,mode=0700"); err != nil {
		t.Fatalf("mounting a 4 MiB tmpfs: %v", err)
	}
	t.Cleanup(func() {
		syscall.Unmount(mnt, 0)
		os.Remove(mnt)
	})
	t.Setenv("TMPDIR", mnt) // the node's data directory is a t.TempDir

	tn := startTestNode(t, twoPools(t))
	if !strings.HasPrefix(tn.cfg.DataDir, mnt) {
		t.Fatalf("data directory %s is not on the tmpfs %s", tn.cfg.DataDir, mnt)
	}
	tn.addCert("app.uni-a.test")
	c := tn.httpClient(false)

	// Fill the disk.
	filler := filepath.Join(mnt, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling the disk: %v", err)
			}
			break
		}
	}
	f.Close()

	// Writes are refused with 507 naming the cause; there may be a few free
	// pages left in the store file, so write until one is refused.
	var apiErr *admin.APIError
	for i := 0; ; i++ {
		names := []string{"n" + strings.Repeat("x", 40) + string(rune('a'+i%26)) + ".uni-b.test"}
		certPEM, keyPEM, _ := tn.ca.Issue(names...)
		_, err := tn.client.AddCert(context.Background(), certPEM, keyPEM)
		if err == nil {
			if i > 50 {
				t.Fatal("50 certificates added on a full disk")
			}
			continue
		}
		if !errors.As(err, &apiErr) {
			t.Fatalf("write on a full disk: %v", err)
		}
		break
	}
	if apiErr.Status != http.StatusInsufficientStorage || apiErr.Code != "disk_full" || !strings.Contains(apiErr.Message, "no space left on device") || !strings.Contains(apiErr.Message, "gatehouse.db") {
		t.Fatalf("write on a full disk: %d %s %q; want 507 disk_full naming the store file and the cause", apiErr.Status, apiErr.Code, apiErr.Message)
	}

	// Serving goes on.
	if code, _ := get(t, c, "https://app.uni-a.test/"); code != 200 {
		t.Fatalf("request while the disk is full: %d", code)
	}
	if _, err := tn.handshake("app.uni-a.test"); err != nil {
		t.Fatalf("handshake while the disk is full: %v", err)
	}

	// Space freed: the next write goes through.
	os.Remove(filler)
	tn.addCert("after.uni-b.test")
	if _, err := tn.handshake("after.uni-b.test"); err != nil {
		t.Fatalf("certificate added after space was freed is not served: %v", err)
	}
}
