package status

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"gatehouse/internal/config"
	"gatehouse/internal/store"
	"gatehouse/internal/store/bolt"
)

// clock is an injected clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// health is mutable pool health and request counters.
type health struct {
	mu       sync.Mutex
	pools    map[string][]bool
	counters map[string][2]uint64 // pool → cumulative requests, failures
}

// serve counts requests to pool, failures of them failed.
func (h *health) serve(pool string, requests, failures uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.counters == nil {
		h.counters = map[string][2]uint64{}
	}
	c := h.counters[pool]
	h.counters[pool] = [2]uint64{c[0] + requests, c[1] + failures}
}

func (h *health) set(pool string, up ...bool) {
	h.mu.Lock()
	h.pools[pool] = up
	h.mu.Unlock()
}

func (h *health) source() []Pool {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []Pool
	for name, ups := range h.pools {
		p := Pool{Name: name, Requests: h.counters[name][0], Failures: h.counters[name][1]}
		for i, up := range ups {
			p.Members = append(p.Members, Member{Address: fmt.Sprintf("10.0.0.%d:80", i+1), Up: up})
		}
		out = append(out, p)
	}
	return out
}

var t0 = time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)

type fixture struct {
	p     *Portal
	clock *clock
	h     *health
	st    store.Store
	dir   string
}

func seqIDs() func() string {
	var mu sync.Mutex
	n := 0
	return func() string {
		mu.Lock()
		defer mu.Unlock()
		n++
		return fmt.Sprintf("id%010d", n)
	}
}

var testStatus = config.Status{
	Title: "University services",
	Components: []config.Component{
		{Name: "Web app", Region: "EU01", Description: "Courses and grades", Pools: []string{"web"}},
		{Name: "Mobile app", Region: "EU01", Pools: []string{"mobile"}},
		{Name: "Web app", Region: "US01", Pools: []string{"web-us"}},
	},
	// The tests' webhook receivers listen on loopback, which only the
	// allow-list permits.
	Webhooks: config.StatusWebhooks{AllowHosts: []string{"127.0.0.1"}},
}

// newFixture starts a portal on a bolt store in dir (a new temp dir when
// empty) with an injected clock and sequential ids.
func newFixture(t *testing.T, dir string, opts Options) *fixture {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	st, err := bolt.Open(filepath.Join(dir, "status.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{clock: &clock{t: t0}, h: &health{pools: map[string][]bool{"web": {true, true}, "mobile": {true}, "web-us": {true}}}, st: st, dir: dir}
	opts.Now, opts.Store = f.clock.Now, st
	if opts.IDs == nil {
		opts.IDs = seqIDs()
	}
	if opts.Interval == 0 {
		opts.Interval = time.Hour // tests drive Tick themselves
	}
	cfg := testStatus
	cfg.Hysteresis = config.Duration(30 * time.Second)
	f.p = New(cfg, nil, f.h.source, opts)
	if err := f.p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	stopLead := lead(t, f.p)
	t.Cleanup(func() {
		stopLead()
		f.p.Close()
		st.Close()
	})
	return f
}

// lead runs p.Lead until the returned stop is called, as a single node
// does, and waits until p leads.
func lead(t *testing.T, p *Portal) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.Lead(ctx)
	}()
	waitFor(t, "leadership", p.Leading)
	return func() {
		cancel()
		<-done
	}
}

func (f *fixture) state(t *testing.T, ref string) string {
	t.Helper()
	for _, c := range f.p.Components() {
		if c.ID == ref || c.Region+"/"+c.Name == ref {
			return c.Status
		}
	}
	t.Fatalf("no component %q", ref)
	return ""
}

func TestHysteresis(t *testing.T) {
	f := newFixture(t, "", Options{})
	type step struct {
		after  time.Duration
		mobile []bool
		want   string
	}
	steps := []step{
		{0, []bool{false}, Operational},                // the outage begins
		{29 * time.Second, []bool{false}, Operational}, // not held long enough
		{time.Second, []bool{false}, Major},            // held 30s
		{10 * time.Second, []bool{true}, Major},        // recovery must hold too
		{10 * time.Second, []bool{false}, Major},       // a flap resets it
		{10 * time.Second, []bool{true}, Major},
		{30 * time.Second, []bool{true}, Operational},
	}
	for i, s := range steps {
		f.clock.Add(s.after)
		f.h.set("mobile", s.mobile...)
		f.p.Tick()
		if got := f.state(t, "EU01/Mobile app"); got != s.want {
			t.Fatalf("step %d (+%v, up=%v): got %s, want %s", i, s.after, s.mobile, got, s.want)
		}
	}
	// Half the members up is degraded, less than half a partial outage.
	f.h.set("web", true, false)
	f.p.Tick()
	f.clock.Add(30 * time.Second)
	f.p.Tick()
	if got := f.state(t, "EU01/Web app"); got != Degraded {
		t.Errorf("one of two members up: got %s, want %s", got, Degraded)
	}
}

func TestDraftIncidentOnMajorOutage(t *testing.T) {
	f := newFixture(t, "", Options{})
	f.h.set("mobile", false)
	f.p.Tick()
	f.clock.Add(30 * time.Second)
	f.p.Tick()
	list := f.p.Incidents()
	if len(list) != 1 || !list[0].Draft || list[0].Name != "EU01 Mobile app: major outage" {
		t.Fatalf("incidents after a major outage: %+v", list)
	}
	// A draft is not public.
	if body := string(f.p.Files()["api/v2/incidents.json"]); strings.Contains(body, list[0].ID) {
		t.Errorf("draft incident %s is in incidents.json", list[0].ID)
	}
	// A second outage of the same component while the draft is open adds nothing.
	f.h.set("mobile", true)
	f.clock.Add(30 * time.Second)
	f.p.Tick()
	f.p.Tick()
	f.h.set("mobile", false)
	f.clock.Add(30 * time.Second)
	f.p.Tick()
	f.clock.Add(30 * time.Second)
	f.p.Tick()
	if got := len(f.p.Incidents()); got != 1 {
		t.Errorf("incidents after a second outage: got %d, want 1", got)
	}
	// Publishing makes it public.
	if _, err := f.p.UpdateIncident(context.Background(), list[0].ID, UpdateRequest{Status: Identified, Body: "Database failover.", Publish: true}); err != nil {
		t.Fatal(err)
	}
	if body := string(f.p.Files()["api/v2/incidents/unresolved.json"]); !strings.Contains(body, list[0].ID) {
		t.Errorf("published incident %s is not in unresolved.json", list[0].ID)
	}
}

func TestOverrideWinsUntilCleared(t *testing.T) {
	f := newFixture(t, "", Options{})
	ctx := context.Background()
	if _, err := f.p.SetOverride(ctx, "EU01/Web app", OverrideRequest{Status: Partial, Reason: "slow logins"}); err != nil {
		t.Fatal(err)
	}
	f.clock.Add(time.Minute)
	f.p.Tick() // health says operational; the override wins
	if got := f.state(t, "EU01/Web app"); got != Partial {
		t.Fatalf("with override: got %s, want %s", got, Partial)
	}
	// It survives a restart (it is in the store).
	f.p.Close()
	cfg := testStatus
	p2 := New(cfg, nil, f.h.source, Options{Store: f.st, Now: f.clock.Now, Interval: time.Hour})
	if err := p2.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	f.p = p2
	if got := f.state(t, "EU01/Web app"); got != Partial {
		t.Fatalf("after restart: got %s, want %s", got, Partial)
	}
	if err := p2.ClearOverride(ctx, "EU01/Web app"); err != nil {
		t.Fatal(err)
	}
	if got := f.state(t, "EU01/Web app"); got != Operational {
		t.Fatalf("after clear: got %s, want %s", got, Operational)
	}
}

func TestBadInputChangesNothing(t *testing.T) {
	f := newFixture(t, "", Options{})
	ctx := context.Background()
	resolved, err := f.p.OpenIncident(ctx, IncidentRequest{Name: "Old", Body: "x", Components: []string{"Mobile app"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.p.UpdateIncident(ctx, resolved.ID, UpdateRequest{Status: Resolved, Body: "Fixed."}); err != nil {
		t.Fatal(err)
	}
	open, err := f.p.OpenIncident(ctx, IncidentRequest{Name: "Open", Body: "x"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		do        func() error
		wantField string
		wantIn    string
	}{
		{"unknown component", func() error {
			_, err := f.p.OpenIncident(ctx, IncidentRequest{Name: "x", Body: "y", Components: []string{"EU09/Nothing"}})
			return err
		}, "components[0]", "not a configured component"},
		{"ambiguous component", func() error {
			_, err := f.p.OpenIncident(ctx, IncidentRequest{Name: "x", Body: "y", Components: []string{"Web app"}})
			return err
		}, "components[0]", "Region/Name"},
		{"bad impact", func() error {
			_, err := f.p.OpenIncident(ctx, IncidentRequest{Name: "x", Body: "y", Impact: "severe"})
			return err
		}, "impact", "none, minor, major, critical"},
		{"missing name", func() error {
			_, err := f.p.OpenIncident(ctx, IncidentRequest{Body: "y"})
			return err
		}, "name", "required"},
		{"update on a resolved incident", func() error {
			_, err := f.p.UpdateIncident(ctx, resolved.ID, UpdateRequest{Status: Monitoring, Body: "again"})
			return err
		}, "status", "is resolved"},
		{"bad update status", func() error {
			_, err := f.p.UpdateIncident(ctx, open.ID, UpdateRequest{Status: "fixed", Body: "y"})
			return err
		}, "status", "investigating, identified, monitoring, resolved"},
		{"oversize body", func() error {
			_, err := f.p.UpdateIncident(ctx, open.ID, UpdateRequest{Status: Monitoring, Body: strings.Repeat("a", MaxBodyBytes+1)})
			return err
		}, "body", "limit"},
		{"report on an open incident", func() error {
			_, err := f.p.PublishPostmortem(ctx, open.ID, "# Report")
			return err
		}, "status", "resolve it before"},
		{"oversize report", func() error {
			_, err := f.p.PublishPostmortem(ctx, resolved.ID, strings.Repeat("#", MaxPostmortemBytes+1))
			return err
		}, "markdown", "limit"},
		{"window ends before it starts", func() error {
			_, err := f.p.ScheduleMaintenance(ctx, MaintenanceRequest{Name: "DB", ScheduledFor: t0.Add(2 * time.Hour), ScheduledUntil: t0.Add(time.Hour)})
			return err
		}, "scheduled_until", "not after scheduled_for"},
		{"override to an unknown state", func() error {
			_, err := f.p.SetOverride(ctx, "Mobile app", OverrideRequest{Status: "down"})
			return err
		}, "status", "operational"},
		{"subscriber with a short secret", func() error {
			_, err := f.p.AddSubscriber(ctx, SubscriberRequest{URL: "http://127.0.0.1:1/hook", Secret: "short"})
			return err
		}, "secret", "at least 16"},
		{"subscriber to an unknown component", func() error {
			_, err := f.p.AddSubscriber(ctx, SubscriberRequest{URL: "http://127.0.0.1:1/hook", Components: []string{"EU09/Nothing"}})
			return err
		}, "components[0]", "not a configured component"},
		{"subscriber with a relative URL", func() error {
			_, err := f.p.AddSubscriber(ctx, SubscriberRequest{URL: "/hook"})
			return err
		}, "url", "absolute"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rev, _ := f.st.Rev(ctx)
			siteRev := f.p.Revision()
			err := tt.do()
			var in *InputError
			if !errors.As(err, &in) {
				t.Fatalf("got %v, want an input error", err)
			}
			if in.Field != tt.wantField || !strings.Contains(in.Msg, tt.wantIn) {
				t.Errorf("got %q, want field %s and %q", err, tt.wantField, tt.wantIn)
			}
			if got, _ := f.st.Rev(ctx); got != rev {
				t.Errorf("store revision moved from %d to %d", rev, got)
			}
			if got := f.p.Revision(); got != siteRev {
				t.Errorf("site re-rendered (%d → %d)", siteRev, got)
			}
		})
	}
	if _, err := f.p.UpdateIncident(ctx, "nosuchincide", UpdateRequest{Status: Monitoring, Body: "x"}); !errors.As(err, new(*NotFoundError)) {
		t.Errorf("update of a missing incident: got %v, want not found", err)
	}
}

func TestMaintenanceWindow(t *testing.T) {
	f := newFixture(t, "", Options{})
	ctx := context.Background()
	m, err := f.p.ScheduleMaintenance(ctx, MaintenanceRequest{Name: "Database upgrade", Components: []string{"EU01/Mobile app"},
		ScheduledFor: t0.Add(time.Hour), ScheduledUntil: t0.Add(2 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	check := func(when string, wantState, wantStatus string, upcoming, active bool) {
		t.Helper()
		if got := f.state(t, "EU01/Mobile app"); got != wantState {
			t.Errorf("%s: component %s, want %s", when, got, wantState)
		}
		var got MaintenanceWindow
		for _, x := range f.p.Maintenances() {
			if x.ID == m.ID {
				got = x
			}
		}
		if got.Status != wantStatus {
			t.Errorf("%s: maintenance %s, want %s", when, got.Status, wantStatus)
		}
		files := f.p.Files()
		if in := strings.Contains(string(files["api/v2/scheduled-maintenances/upcoming.json"]), m.ID); in != upcoming {
			t.Errorf("%s: in upcoming.json = %v, want %v", when, in, upcoming)
		}
		if in := strings.Contains(string(files["api/v2/scheduled-maintenances/active.json"]), m.ID); in != active {
			t.Errorf("%s: in active.json = %v, want %v", when, in, active)
		}
	}
	check("before", Operational, Scheduled, true, false)
	f.clock.Add(time.Hour)
	f.p.Tick()
	check("during", Maintenance, InProgress, false, true)
	f.clock.Add(time.Hour)
	f.p.Tick()
	check("after", Operational, Completed, false, false)

	// Started early by hand, completed by hand.
	m2, err := f.p.ScheduleMaintenance(ctx, MaintenanceRequest{Name: "Cache flush", Components: []string{"US01/Web app"},
		ScheduledFor: t0.Add(5 * time.Hour), ScheduledUntil: t0.Add(6 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.p.SetMaintenanceStatus(ctx, m2.ID, InProgress, ""); err != nil {
		t.Fatal(err)
	}
	if got := f.state(t, "US01/Web app"); got != Maintenance {
		t.Errorf("started early: %s, want %s", got, Maintenance)
	}
	if _, err := f.p.SetMaintenanceStatus(ctx, m2.ID, Completed, "Done."); err != nil {
		t.Fatal(err)
	}
	if got := f.state(t, "US01/Web app"); got != Operational {
		t.Errorf("completed: %s, want %s", got, Operational)
	}
	if _, err := f.p.SetMaintenanceStatus(ctx, m2.ID, InProgress, ""); err == nil {
		t.Error("restarting a completed maintenance: no error")
	}
}

func TestHistoryKeptAndWeighted(t *testing.T) {
	dir := t.TempDir()
	f := newFixture(t, dir, Options{})
	ctx := context.Background()
	// Records older than the page shows but within retention are kept; older ones are pruned.
	old := t0.AddDate(0, 0, -95).Format(dayLayout)
	ancient := t0.AddDate(0, 0, -HistoryKeepDays-5).Format(dayLayout)
	for _, day := range []string{old, ancient} {
		if _, err := store.PutKV(ctx, f.st, keyHistory+day, []byte(`{"x":{"operational":86400}}`)); err != nil {
			t.Fatal(err)
		}
	}
	// Day 0: 12h operational. Day 1: 1h major, 2h partial, rest operational.
	f.clock.Add(12 * time.Hour)
	f.p.Tick()
	id := ""
	for _, c := range f.p.Components() {
		if c.Region == "EU01" && c.Name == "Mobile app" {
			id = c.ID
		}
	}
	if _, err := f.p.SetOverride(ctx, id, OverrideRequest{Status: Major}); err != nil {
		t.Fatal(err)
	}
	f.clock.Add(time.Hour)
	f.p.Tick()
	if _, err := f.p.SetOverride(ctx, id, OverrideRequest{Status: Partial}); err != nil {
		t.Fatal(err)
	}
	f.clock.Add(2 * time.Hour)
	f.p.Tick()
	if err := f.p.ClearOverride(ctx, id); err != nil {
		t.Fatal(err)
	}
	f.clock.Add(20 * time.Hour)
	f.p.Tick()
	f.p.Close()

	// A new portal on the same store sees the same history.
	p2 := New(testStatus, nil, f.h.source, Options{Store: f.st, Now: f.clock.Now, Interval: time.Hour})
	if err := p2.Start(ctx); err != nil {
		t.Fatal(err)
	}
	f.p = p2
	p2.mu.Lock()
	days, pct := p2.uptimeLocked(id, f.clock.Now())
	p2.mu.Unlock()
	day1 := days[len(days)-1]
	if day1.Date != "2026-03-11" || day1.State != Major {
		t.Errorf("today: got %+v, want 2026-03-11 %s", day1, Major)
	}
	if got := days[len(days)-2]; got.State != Operational {
		t.Errorf("yesterday: got %+v, want operational", got)
	}
	if got := days[0]; got.State != "" {
		t.Errorf("90 days ago: got %+v, want no data", got)
	}
	// 1h major + 0.3 × 2h partial = 1.6h down of 35h tracked.
	if want := 95.42; pct != want {
		t.Errorf("uptime: got %v, want %v", pct, want)
	}
	for _, c := range []struct {
		day  string
		kept bool
	}{{old, true}, {ancient, false}} {
		_, err := f.st.Get(ctx, keyHistory+c.day)
		if kept := err == nil; kept != c.kept {
			t.Errorf("history of %s kept = %v, want %v (err %v)", c.day, kept, c.kept, err)
		}
	}
	if body := string(p2.Files()["index.html"]); !strings.Contains(body, `data-uptime="Mobile app">95.42% uptime`) {
		t.Errorf("index.html lacks the uptime percentage")
	}
}

func TestComponentIDsAreStable(t *testing.T) {
	a := New(testStatus, nil, nil, Options{})
	b := New(testStatus, nil, nil, Options{})
	var ida, idb []string
	for _, c := range a.Components() {
		ida = append(ida, c.ID)
	}
	for _, c := range b.Components() {
		idb = append(idb, c.ID)
	}
	if diff := cmp.Diff(ida, idb); diff != "" {
		t.Errorf("ids differ between portals (-a +b):\n%s", diff)
	}
	for _, id := range ida {
		if !validID(id) {
			t.Errorf("id %q is not 12 lowercase characters", id)
		}
	}
}
