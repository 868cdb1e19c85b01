package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"gatehouse/internal/store/etcd"
	"gatehouse/internal/store/etcd/etcdtest"
)

var (
	binOnce sync.Once
	binDir  string
	binPath string
)

// gatehouseBinary builds this command once per test run (see
// buildGatehouse) and returns the binary's path, for tests that need
// separate processes. TestMain removes it.
func gatehouseBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "gatehouse-bin-")
		if err != nil {
			t.Fatal(err)
		}
		binDir = dir
		binPath = buildGatehouse(t, dir)
	})
	if binPath == "" {
		t.Fatal("building the gatehouse binary failed in an earlier test")
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// electionLeader returns the value of the current leader of a fleet-once
// election (the campaign key with the lowest creation revision), or "".
func electionLeader(ctx context.Context, cli *clientv3.Client, prefix, name string) (string, error) {
	resp, err := cli.Get(ctx, strings.TrimSuffix(prefix, "/")+"-elections/"+name+"/",
		clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend), clientv3.WithLimit(1))
	if err != nil {
		return "", err
	}
	if len(resp.Kvs) == 0 {
		return "", nil
	}
	return string(resp.Kvs[0].Value), nil
}

// nodeProcess is `gatehouse serve` in a separate process, killed (SIGKILL)
// at the end of the test if still running.
type nodeProcess struct {
	t      *testing.T
	cmd    *exec.Cmd
	dir    string
	exited chan struct{}
}

// startNodeProcess runs bin with a configuration of its own data_dir,
// the listeners given (YAML under "listeners:") and tail.
func startNodeProcess(t *testing.T, bin, listeners, tail string) *nodeProcess {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "gatehouse.yaml")
	doc := fmt.Sprintf("data_dir: %s\nlisteners:\n%s%s", dir, listeners, tail)
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "--config", path)
	logf, err := os.Create(filepath.Join(dir, "node.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logf.Close() })
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	np := &nodeProcess{t: t, cmd: cmd, dir: dir, exited: make(chan struct{})}
	go func() { cmd.Wait(); close(np.exited) }()
	t.Cleanup(np.kill)
	return np
}

// kill ends the process with SIGKILL (no resignation, no last write) and
// waits for it.
func (np *nodeProcess) kill() {
	np.cmd.Process.Kill()
	<-np.exited
}

func (np *nodeProcess) showLog() {
	b, _ := os.ReadFile(filepath.Join(np.dir, "node.log"))
	np.t.Logf("node process log:\n%s", b)
}

// waitElectionLeader waits until the leader of the fleet-once work under
// prefix ends in suffix (a node's "/pid"), and returns how long that took;
// it fails the test (after onFail) when within passes.
func waitElectionLeader(t *testing.T, cli *clientv3.Client, prefix, work, suffix string, within time.Duration, onFail func()) time.Duration {
	t.Helper()
	start := time.Now()
	var last string
	for time.Since(start) < within {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		l, err := electionLeader(ctx, cli, prefix, work)
		cancel()
		if err == nil && strings.HasSuffix(l, suffix) {
			return time.Since(start)
		}
		last = l
		time.Sleep(50 * time.Millisecond)
	}
	onFail()
	t.Fatalf("leader of %s is %q after %v, want one ending in %q", work, last, within, suffix)
	return 0
}

// TestFleetKilledLeaderLosesLock: a node killed (SIGKILL, no resignation)
// while it holds a fleet-once lock loses it to another node once its lease
// expires.
func TestFleetKilledLeaderLosesLock(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and waits out a lease (~15s); skipped with -short")
	}
	bin := gatehouseBinary(t)
	cluster := etcdtest.Start(t, 3)
	shared := t.TempDir()
	var eps []string
	for _, ep := range cluster.Endpoints() {
		eps = append(eps, fmt.Sprintf("%q", ep))
	}
	tail := fmt.Sprintf(`store:
  etcd:
    endpoints: [%s]
    prefix: /kill-test
    request_timeout: 1s
    dial_timeout: 2s
tls:
  kek_file: %s
%s`, strings.Join(eps, ", "), filepath.Join(shared, "kek"), twoPools(t))

	// Node A: a separate process, started first so that it leads.
	na := startNodeProcess(t, bin, "  https: {address: \"127.0.0.1:0\"}\n  status: {address: \"127.0.0.1:0\"}\n  admin: {address: \"127.0.0.1:0\"}\n", tail)
	cli, err := clientv3.New(clientv3.Config{Endpoints: cluster.Endpoints(), DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	const work = "session-tickets"
	pidSuffix := func(pid int) string { return fmt.Sprintf("/%d", pid) }
	waitLeader := func(suffix string, within time.Duration) time.Duration {
		t.Helper()
		return waitElectionLeader(t, cli, "/kill-test", work, suffix, within, na.showLog)
	}
	waitLeader(pidSuffix(na.cmd.Process.Pid), 30*time.Second)

	// Node B: in this process; it campaigns and waits behind A.
	nb := startTestNode(t, tail)
	_ = nb
	time.Sleep(500 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	l, err := electionLeader(ctx, cli, "/kill-test", work)
	cancel()
	if err != nil || !strings.HasSuffix(l, pidSuffix(na.cmd.Process.Pid)) {
		t.Fatalf("leader after node B started: %q, %v; want node A still", l, err)
	}

	// Kill A without a chance to resign: B takes over within the lease.
	na.kill()
	took := waitLeader(pidSuffix(os.Getpid()), etcd.DefaultElectionTTL+10*time.Second)
	t.Logf("node B leads %s %v after node A was killed (lease %v)", work, took.Round(time.Millisecond), etcd.DefaultElectionTTL)
	if took > etcd.DefaultElectionTTL+5*time.Second {
		t.Errorf("takeover took %v, want within the lease of %v (+5s)", took, etcd.DefaultElectionTTL)
	}
}
