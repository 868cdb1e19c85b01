package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"gatehouse/internal/mailer/smtptest"
	"gatehouse/internal/status"
	"gatehouse/internal/store/etcd"
	"gatehouse/internal/store/etcd/etcdtest"
)

// TestStatusEmailLeaderKilledMidBatch: on a three-member etcd fleet, the
// node sending a notification to 300 subscribers (a separate process,
// four SMTP sessions) is killed with SIGKILL once the mail server has
// accepted 100 messages; the other node takes the lead and finishes the
// batch. No subscriber is missed, and at most the messages in flight at
// the kill (one per session) are received twice.
func TestStatusEmailLeaderKilledMidBatch(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and waits out a lease (~15s); skipped with -short")
	}
	const subs, killAfter, sessions = 300, 100, 4
	bin := gatehouseBinary(t)
	cluster := etcdtest.Start(t, 3)
	srv, err := smtptest.Start(smtptest.Options{Username: "status", Password: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	shared := t.TempDir()
	caFile, pwFile := filepath.Join(shared, "smtp-ca.pem"), filepath.Join(shared, "smtp.pw")
	os.WriteFile(caFile, srv.CAPEM, 0o600)
	os.WriteFile(pwFile, []byte("s3cret\n"), 0o600)
	var eps []string
	for _, ep := range cluster.Endpoints() {
		eps = append(eps, fmt.Sprintf("%q", ep))
	}
	const prefix = "/mail-kill-test"
	tail := fmt.Sprintf(`store:
  etcd:
    endpoints: [%s]
    prefix: %s
    request_timeout: 2s
    dial_timeout: 2s
tls:
  kek_file: %s
status:
  title: University services
  url: https://status.uni-a.test/
  components:
    - {name: Web app, region: EU01, pools: [a]}
  email:
    smtp: {host: 127.0.0.1, port: %d, username: status, password_file: %s, ca_file: %s, connections: %d}
    from: "University status <status@uni-a.test>"
    rate_per_second: 60
%s`, strings.Join(eps, ", "), prefix, filepath.Join(shared, "kek"), srv.Port(), pwFile, caFile, sessions, twoPools(t))

	// Node A: a separate process, started first so that it leads.
	na := startNodeProcess(t, bin, "  https: {address: \"127.0.0.1:0\"}\n  status: {address: \"127.0.0.1:0\"}\n  admin: {address: \"127.0.0.1:0\"}\n", tail)
	cli, err := clientv3.New(clientv3.Config{Endpoints: cluster.Endpoints(), DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	waitElectionLeader(t, cli, prefix, "status", fmt.Sprintf("/%d", na.cmd.Process.Pid), 30*time.Second, na.showLog)

	// Node B: in this process, behind A. The subscribers and the incident
	// are written through B; A sends.
	nb := startTestNode(t, tail)
	ctx := context.Background()
	for i := range subs {
		if _, err := nb.client.AddEmailSubscriber(ctx, status.EmailSubscriberRequest{Email: fmt.Sprintf("reader%03d@uni-b.test", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := nb.client.OpenIncident(ctx, status.IncidentRequest{Name: "Outage of the web app", Body: "Investigating."}); err != nil {
		t.Fatal(err)
	}
	if !srv.Wait(killAfter, 60*time.Second) {
		na.showLog()
		t.Fatalf("node A sent %d messages, want %d before the kill", srv.Count(), killAfter)
	}
	na.kill() // SIGKILL: no resignation, no last write
	atKill := srv.Count()
	took := waitElectionLeader(t, cli, prefix, "status", fmt.Sprintf("/%d", os.Getpid()), etcd.DefaultElectionTTL+15*time.Second, na.showLog)

	deadline := time.Now().Add(60 * time.Second)
	count := map[string]int{}
	for {
		count = map[string]int{}
		for _, m := range srv.Messages() {
			count[strings.Join(m.To, ",")]++
		}
		if len(count) == subs || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // a late duplicate would show
	count = map[string]int{}
	total := 0
	for _, m := range srv.Messages() {
		count[strings.Join(m.To, ",")]++
		total++
	}
	missing := 0
	for i := range subs {
		if count[fmt.Sprintf("reader%03d@uni-b.test", i)] == 0 {
			missing++
		}
	}
	dups := total - len(count)
	t.Logf("killed node A after %d accepted messages; node B led %v later; %d messages for %d subscribers: %d missing, %d received twice (bound: %d sessions in flight)",
		atKill, took.Round(time.Millisecond), total, subs, missing, dups, sessions)
	if missing != 0 {
		t.Errorf("%d subscribers received nothing", missing)
	}
	if dups > sessions {
		t.Errorf("%d duplicates, more than the %d messages that can be in flight", dups, sessions)
	}
	for to, n := range count {
		if n > 2 {
			t.Errorf("%s received %d messages", to, n)
		}
	}
}
