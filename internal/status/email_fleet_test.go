package status

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"gatehouse/internal/config"
	"gatehouse/internal/mailer/smtptest"
	"gatehouse/internal/store/etcd/etcdtest"
)

// TestEmailLeaderStopsMidBatch: three portals on a three-member etcd
// cluster; the leader is stopped in the middle of a notification batch
// and another node finishes it: every subscriber gets the notification,
// and at most the one message in flight at the stop is sent twice.
func TestEmailLeaderStopsMidBatch(t *testing.T) {
	cl := etcdtest.Start(t, 3)
	srv, err := smtptest.Start(smtptest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	writeFile(t, caFile, srv.CAPEM)
	cfg := testStatus
	cfg.Email = &config.StatusEmail{SMTP: config.SMTP{Host: "127.0.0.1", Port: srv.Port(), CAFile: caFile},
		From: "status@example.edu", PublicURL: "https://status.example.edu/", RatePerSecond: 200}
	var nodes []*fleetNode
	for i := range 3 {
		nodes = append(nodes, startFleetNode(t, cl.Endpoints(), fmt.Sprintf("node-%d", i), cfg, Options{}))
	}
	leader := func() *fleetNode {
		for _, n := range nodes {
			if n.p.Leading() {
				return n
			}
		}
		return nil
	}
	waitFor(t, "a leader", func() bool { return leader() != nil })
	first := leader()
	const subs = 150
	ctx := context.Background()
	for i := range subs {
		if _, err := nodes[i%3].p.AddEmailSubscriber(ctx, EmailSubscriberRequest{Email: fmt.Sprintf("r%03d@example.org", i)}); err != nil {
			t.Fatal(err)
		}
	}
	var once sync.Once
	stopped := make(chan struct{})
	srv.OnAccept(func(smtptest.Message) {
		if srv.Count() >= 40 {
			once.Do(func() { go func() { first.stop(); close(stopped) }() })
		}
	})
	if _, err := first.p.OpenIncident(ctx, IncidentRequest{Name: "Outage", Body: "Investigating."}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-stopped:
	case <-time.After(30 * time.Second):
		t.Fatal("the batch never reached 40 messages")
	}
	if int(srv.Count()) >= subs {
		t.Fatalf("the first leader sent all %d before it stopped; the test proves nothing", srv.Count())
	}
	t.Logf("first leader %s stopped after %d messages", first.name, srv.Count())
	if !srv.Wait(subs, 30*time.Second) {
		t.Fatalf("only %d of %d messages accepted after the leader stopped", srv.Count(), subs)
	}
	// Let a possible duplicate arrive, then count.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && storeKeys(t, nodes[(indexOf(nodes, first)+1)%3].p.st, keyMailEvents) > 0 {
		time.Sleep(20 * time.Millisecond)
	}
	count := map[string]int{}
	for _, m := range srv.Messages() {
		count[m.To[0]]++
	}
	dups := 0
	for to, n := range count {
		if n > 1 {
			dups += n - 1
			t.Logf("%s received %d copies", to, n)
		}
	}
	if len(count) != subs || dups > config.DefaultSMTPConnections {
		t.Fatalf("%d of %d recipients reached, %d duplicates; want all, at most the messages in flight (one per SMTP session, %d) twice", len(count), subs, dups, config.DefaultSMTPConnections)
	}
	t.Logf("%d recipients, %d duplicate(s)", len(count), dups)
}

func indexOf(nodes []*fleetNode, n *fleetNode) int {
	for i, x := range nodes {
		if x == n {
			return i
		}
	}
	return -1
}
