package status

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"gatehouse/internal/config"
	"gatehouse/internal/store/etcd"
	"gatehouse/internal/store/etcd/etcdtest"
)

// fleetNode is one portal of a fleet: its own etcd client, its own pool
// health, and its campaign for the status leadership.
type fleetNode struct {
	name string
	p    *Portal
	h    *health
	stop func() // ends the campaign and closes the portal
}

func startFleetNode(t *testing.T, endpoints []string, name string, cfg config.Status, opts Options) *fleetNode {
	t.Helper()
	st, err := etcd.Open(context.Background(), etcd.Options{Endpoints: endpoints, Prefix: "/status-fleet-test", RequestTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	n := &fleetNode{name: name, h: &health{pools: map[string][]bool{"web": {true, true}, "mobile": {true}, "web-us": {true}}}}
	opts.Store, opts.Node = st, name
	opts.Interval, opts.Publish, opts.HistoryFlush = 20*time.Millisecond, 50*time.Millisecond, 200*time.Millisecond
	n.p = New(cfg, nil, n.h.source, opts)
	if err := n.p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = st.RunElected(ctx, "status", name, time.Second, n.p.Lead)
	}()
	stopped := false
	n.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		<-done
		if err := n.p.Close(); err != nil {
			t.Errorf("closing %s: %v", name, err)
		}
		st.Close()
	}
	t.Cleanup(n.stop)
	return n
}

// componentsDoc returns the components of a portal's components.json,
// as served.
func componentsDoc(t *testing.T, p *Portal) string {
	t.Helper()
	var doc struct {
		Components json.RawMessage `json:"components"`
	}
	if err := json.Unmarshal(p.Files()["api/v2/components.json"], &doc); err != nil {
		t.Fatal(err)
	}
	return string(doc.Components)
}

func stateOn(p *Portal, ref string) string {
	for _, c := range p.Components() {
		if c.Region+"/"+c.Name == ref {
			return c.Status
		}
	}
	return ""
}

// TestFleetSharesOneTruth runs two portals over a real etcd cluster: what
// one node observes counts on both pages, exactly one node leads (opens
// drafts, delivers webhooks), and the other takes over when it stops.
func TestFleetSharesOneTruth(t *testing.T) {
	cl := etcdtest.Start(t, 1)
	rc := &receiver{}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	cfg := testStatus
	cfg.Hysteresis = config.Duration(100 * time.Millisecond)
	opts := Options{WebhookBackoff: 10 * time.Millisecond, WebhookTries: 3}
	a := startFleetNode(t, cl.Endpoints(), "node-a", cfg, opts)
	b := startFleetNode(t, cl.Endpoints(), "node-b", cfg, opts)
	nodes := []*fleetNode{a, b}

	leaders := func() []string {
		var out []string
		for _, n := range nodes {
			if n.p.Leading() {
				out = append(out, n.name)
			}
		}
		return out
	}
	waitFor(t, "one leader", func() bool { return len(leaders()) == 1 })
	leader, follower := a, b
	if leaders()[0] == "node-b" {
		leader, follower = b, a
	}

	// A subscriber added on the follower; the leader delivers.
	s, err := follower.p.AddSubscriber(context.Background(), SubscriberRequest{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	rc.mu.Lock()
	rc.secret = s.Secret
	rc.mu.Unlock()
	waitFor(t, "the subscriber on the leader", func() bool { return len(leader.p.Subscribers()) == 1 })

	// The mobile pool is down in the follower's observation only: one of
	// two members seen up across the fleet, degraded on both pages.
	follower.h.set("mobile", false)
	sameOnBoth := func(ref, want string) {
		t.Helper()
		waitFor(t, ref+" "+want+" on both portals", func() bool {
			return stateOn(a.p, ref) == want && stateOn(b.p, ref) == want &&
				componentsDoc(t, a.p) == componentsDoc(t, b.p)
		})
	}
	sameOnBoth("EU01/Mobile app", Degraded)
	for _, n := range nodes {
		for _, c := range n.p.Components() {
			if c.Name == "Mobile app" && (c.HealthyMembers != 1 || c.TotalMembers != 2) {
				t.Errorf("%s: mobile members %d/%d, want 1/2", n.name, c.HealthyMembers, c.TotalMembers)
			}
		}
	}
	// Down on both: a major outage, one draft incident, one webhook per change.
	leader.h.set("mobile", false)
	sameOnBoth("EU01/Mobile app", Major)
	waitFor(t, "the draft on both", func() bool { return len(a.p.Incidents()) == 1 && len(b.p.Incidents()) == 1 })
	waitFor(t, "the follower's view of the leader's delivery log", func() bool { return len(follower.p.Deliveries("")) == 2 })
	var events []string
	for _, h := range rc.received() {
		cu := h.body["component_update"].(map[string]any)
		events = append(events, cu["old_status"].(string)+"→"+cu["new_status"].(string))
		if !h.validSig {
			t.Errorf("webhook without a valid signature")
		}
	}
	if diff := cmp.Diff(events, []string{"operational→degraded_performance", "degraded_performance→major_outage"}); diff != "" {
		t.Errorf("webhooks received (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(follower.p.Deliveries(""), leader.p.Deliveries("")); diff != "" {
		t.Errorf("delivery logs differ (-follower +leader):\n%s", diff)
	}

	// The leader stops; the follower takes over and decides alone: its
	// own observation says the pool is back.
	leader.stop()
	waitFor(t, "the follower to lead", follower.p.Leading)
	follower.h.set("mobile", true)
	waitFor(t, "recovery decided by the new leader", func() bool { return stateOn(follower.p, "EU01/Mobile app") == Operational })
	if got := len(follower.p.Incidents()); got != 1 {
		t.Errorf("incidents after the takeover: %d, want the one draft", got)
	}
	// History written by both leaders: today shows the major outage.
	follower.p.mu.Lock()
	days, _ := follower.p.uptimeLocked(stableID("component", "EU01/Mobile app"), time.Now())
	follower.p.mu.Unlock()
	if got := days[len(days)-1].State; got != Major {
		t.Errorf("today's worst state: %q, want %s", got, Major)
	}
}

// TestPauseFlushesAndResumes: Pause (before a binary upgrade's read-only
// store) writes the accounted history and stops deciding; Resume (the
// upgrade failed) leads again.
func TestPauseFlushesAndResumes(t *testing.T) {
	f := newFixture(t, "", Options{HistoryFlush: 24 * time.Hour})
	f.clock.Add(time.Hour)
	if err := f.p.Pause(); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	if f.p.Leading() {
		t.Fatal("still leading after Pause")
	}
	kv, err := f.st.Get(context.Background(), keyHistory+t0.Format(dayLayout))
	if err != nil {
		t.Fatalf("history of the day after Pause: %v", err)
	}
	var day map[string]map[string]float64
	if err := json.Unmarshal(kv.Value, &day); err != nil {
		t.Fatal(err)
	}
	for id, secs := range day {
		if got := secs[Operational]; got < 3600 {
			t.Errorf("component %s: %v s operational written at Pause, want the hour accounted (3600)", id, got)
		}
	}
	if len(day) == 0 {
		t.Error("no component history written at Pause")
	}

	// Paused, the node does not decide: a pool going down changes nothing.
	f.h.set("mobile", false)
	f.p.Tick()
	f.clock.Add(time.Minute)
	f.p.Tick()
	if got := f.state(t, "EU01/Mobile app"); got != Operational {
		t.Errorf("paused node decided %q for a down pool, want it unchanged (operational)", got)
	}
	f.p.Resume()
	if !f.p.Leading() {
		t.Fatal("not leading after Resume")
	}
	f.p.Tick() // hysteresis starts over: the down state must hold for 30s
	f.clock.Add(time.Minute)
	f.p.Tick()
	if got := f.state(t, "EU01/Mobile app"); got != Major {
		t.Errorf("after Resume: %q for a down pool, want %q", got, Major)
	}
}
