package status

import (
	"context"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"gatehouse/internal/config"
)

// TestErrorRateDrivesState steps a component through error rates over the
// sliding window (1m, at least 20 requests, 5/25/50%) under the 30s
// hysteresis.
func TestErrorRateDrivesState(t *testing.T) {
	f := newFixture(t, "", Options{})
	steps := []struct {
		name               string
		after              time.Duration
		requests, failures uint64
		want               string
	}{
		{"too few requests to count", 10 * time.Second, 10, 10, Operational},
		{"19% pending", 10 * time.Second, 90, 9, Operational},
		{"19% held", 30 * time.Second, 0, 0, Degraded},
		{"90% pending", 30 * time.Second, 100, 90, Degraded},
		{"90% held", 30 * time.Second, 0, 0, Major},
		{"quiet window counts nothing", 70 * time.Second, 0, 0, Major},
		{"recovery held", 30 * time.Second, 0, 0, Operational},
	}
	for _, s := range steps {
		f.clock.Add(s.after)
		f.h.serve("mobile", s.requests, s.failures)
		f.p.Tick()
		if got := f.state(t, "EU01/Mobile app"); got != s.want {
			t.Fatalf("%s: got %s, want %s", s.name, got, s.want)
		}
	}
	// The major outage from errors opened a draft saying why.
	list := f.p.Incidents()
	if len(list) != 1 || !list[0].Draft || !strings.Contains(list[0].Latest().Body, "90% of the 100 requests to mobile in the last 1m0s failed") {
		t.Errorf("draft after an error-driven major outage: %+v", list)
	}

	// The worse of health and errors: half the members up is degraded,
	// 30% errors a partial outage.
	f.h.set("web", true, false)
	f.h.serve("web", 100, 30)
	f.p.Tick()
	f.clock.Add(30 * time.Second)
	f.p.Tick()
	if got := f.state(t, "EU01/Web app"); got != Partial {
		t.Errorf("degraded health with 30%% errors: got %s, want %s", got, Partial)
	}
	var web ComponentState
	for _, c := range f.p.Components() {
		if c.Region == "EU01" && c.Name == "Web app" {
			web = c
		}
	}
	if web.Requests != 100 || web.Failures != 30 || web.ErrorRate != 30 {
		t.Errorf("management view: %d requests, %d failures, %v%%; want 100, 30, 30%%", web.Requests, web.Failures, web.ErrorRate)
	}
}

func TestErrorStateThresholds(t *testing.T) {
	tests := []struct {
		name               string
		cfg                config.ErrorRate
		requests, failures uint64
		want               string
	}{
		{"defaults, below degraded", config.ErrorRate{}, 100, 4, Operational},
		{"defaults, degraded", config.ErrorRate{}, 100, 5, Degraded},
		{"defaults, partial", config.ErrorRate{}, 100, 25, Partial},
		{"defaults, major", config.ErrorRate{}, 100, 50, Major},
		{"below the minimum", config.ErrorRate{}, 19, 19, Operational},
		{"raised minimum", config.ErrorRate{MinRequests: 1000}, 999, 999, Operational},
		{"own thresholds", config.ErrorRate{Degraded: 1, Partial: 2, Major: 3}, 100, 2, Partial},
		{"disabled", config.ErrorRate{Disabled: true}, 100, 100, Operational},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := rules{errRate: tt.cfg.WithDefaults()}
			if got := r.errorState(tt.requests, tt.failures); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

// TestAggregate merges observations of several nodes: members summed,
// counters over the window per node, stale nodes and counter restarts.
func TestAggregate(t *testing.T) {
	obs := func(node string, at time.Time, healthy, total int, req, fail uint64) observation {
		return observation{Node: node, At: at, Pools: []poolObservation{{Name: "web", Healthy: healthy, Total: total, Requests: req, Failures: fail}}}
	}
	now := t0.Add(10 * time.Minute)
	tests := []struct {
		name string
		obs  []observation
		want poolAgg
	}{
		{"one node, window from its first sample", []observation{
			obs("a", now.Add(-30*time.Second), 2, 2, 100, 0), obs("a", now, 2, 2, 300, 50)}, poolAgg{2, 2, 200, 50}},
		{"samples before the window are the baseline", []observation{
			obs("a", now.Add(-3*time.Minute), 2, 2, 0, 0), obs("a", now.Add(-70*time.Second), 2, 2, 1000, 900),
			obs("a", now.Add(-30*time.Second), 2, 2, 1100, 900), obs("a", now, 2, 2, 1200, 910)}, poolAgg{2, 2, 200, 10}},
		{"two nodes summed", []observation{
			obs("a", now.Add(-30*time.Second), 2, 2, 0, 0), obs("a", now, 2, 2, 100, 10),
			obs("b", now.Add(-30*time.Second), 0, 2, 0, 0), obs("b", now, 0, 2, 100, 90)}, poolAgg{2, 4, 200, 100}},
		{"a stale node is ignored", []observation{
			obs("a", now.Add(-30*time.Second), 2, 2, 0, 0), obs("a", now, 2, 2, 100, 0),
			obs("b", now.Add(-time.Minute), 0, 2, 0, 0), obs("b", now.Add(-20*time.Second), 0, 2, 100, 100)}, poolAgg{2, 2, 100, 0}},
		{"a counter restart counts from zero", []observation{
			obs("a", now.Add(-30*time.Second), 2, 2, 5000, 10), obs("a", now, 2, 2, 40, 20)}, poolAgg{2, 2, 40, 20}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &Portal{nodes: map[string]*nodeView{}, publishEv: 5 * time.Second, rules: rules{errRate: config.ErrorRate{}.WithDefaults()}}
			for _, o := range tt.obs {
				p.ingestLocked(o)
			}
			got := p.aggregateLocked(now)["web"]
			if diff := cmp.Diff(got, tt.want, cmp.AllowUnexported(poolAgg{})); diff != "" {
				t.Errorf("(-got +want):\n%s", diff)
			}
		})
	}
}

// TestReconfigure applies a reloaded status section: a component added,
// one removed, the others keep their state and history.
func TestReconfigure(t *testing.T) {
	f := newFixture(t, "", Options{})
	ctx := context.Background()
	if _, err := f.p.SetOverride(ctx, "EU01/Mobile app", OverrideRequest{Status: Partial}); err != nil {
		t.Fatal(err)
	}
	f.clock.Add(time.Hour)
	f.p.Tick()
	ids := map[string]string{}
	for _, c := range f.p.Components() {
		ids[c.Region+"/"+c.Name] = c.ID
	}

	cfg := testStatus
	cfg.Title = "University services (reloaded)"
	cfg.Components = []config.Component{
		{Name: "Mobile app", Region: "EU01", Pools: []string{"mobile"}},
		{Name: "Web app", Region: "EU01", Pools: []string{"web"}},
		{Name: "Offline content", Region: "EU01", Pools: []string{"web"}},
	}
	f.p.Reconfigure(cfg, nil)
	var got []string
	for _, c := range f.p.Components() {
		got = append(got, c.Region+"/"+c.Name+"="+c.Status)
	}
	if diff := cmp.Diff(got, []string{"EU01/Mobile app=partial_outage", "EU01/Web app=operational", "EU01/Offline content=operational"}); diff != "" {
		t.Errorf("components after reload (-got +want):\n%s", diff)
	}
	files := f.p.Files()
	comps := string(files["api/v2/components.json"])
	for name, want := range map[string]bool{"Offline content": true, "Mobile app": true} {
		if strings.Contains(comps, `"name":"`+name+`"`) != want {
			t.Errorf("components.json has %s = %v, want %v", name, !want, want)
		}
	}
	if strings.Contains(comps, ids["US01/Web app"]) || strings.Contains(string(files["index.html"]), "US01") {
		t.Errorf("the removed component US01/Web app is still on the page")
	}
	if !strings.Contains(string(files["index.html"]), "University services (reloaded)") {
		t.Errorf("the new title is not on the page")
	}
	// History of a kept component: an hour of partial outage today.
	f.p.mu.Lock()
	days, pct := f.p.uptimeLocked(ids["EU01/Mobile app"], f.clock.Now())
	f.p.mu.Unlock()
	if today := days[len(days)-1]; today.State != Partial || pct == 100 {
		t.Errorf("history of EU01/Mobile app after reload: %+v, %v%%", today, pct)
	}
	// A later reload that brings the component back finds its history.
	f.p.Reconfigure(testStatus, nil)
	f.p.mu.Lock()
	_, pct = f.p.uptimeLocked(ids["US01/Web app"], f.clock.Now())
	f.p.mu.Unlock()
	if pct != 100 {
		t.Errorf("US01/Web app back with uptime %v%%, want 100", pct)
	}
}

// TestDeliveryLogPersisted: the log is in the store, survives a restart
// and stays bounded there.
func TestDeliveryLogPersisted(t *testing.T) {
	rc := &receiver{secret: "0123456789abcdef-secret"}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	f := newFixture(t, "", Options{WebhookBackoff: time.Millisecond})
	ctx := context.Background()
	sub, err := f.p.AddSubscriber(ctx, SubscriberRequest{URL: srv.URL, Secret: rc.secret})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.p.SetOverride(ctx, "Mobile app", OverrideRequest{Status: Major}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a delivery", func() bool { return len(f.p.Deliveries("")) == 1 })
	want := f.p.Deliveries("")

	f.p.Close()
	p2 := New(testStatus, nil, f.h.source, Options{Store: f.st, Now: f.clock.Now, Interval: time.Hour})
	if err := p2.Start(ctx); err != nil {
		t.Fatal(err)
	}
	f.p = p2
	if diff := cmp.Diff(p2.Deliveries(""), want); diff != "" {
		t.Errorf("delivery log after a restart (-got +want):\n%s", diff)
	}
	if got := p2.Deliveries(sub.ID); len(got) != 1 {
		t.Errorf("log of %s: %d entries, want 1", sub.ID, len(got))
	}
	if got := p2.Deliveries("nosuchsubscr"); len(got) != 0 {
		t.Errorf("log of an unknown subscriber: %d entries", len(got))
	}

	// Bounded: the oldest attempts leave the store as new ones come.
	for i := range deliveryLogSize + 10 {
		p2.hooks.record(Delivery{ID: fmt.Sprintf("d%011d", i), Subscriber: sub.ID, Event: "component_update", Attempt: 1, OK: true,
			Final: true, At: t0.Add(time.Duration(i+1) * time.Hour)})
	}
	kvs, _, err := f.st.List(ctx, keyDeliveries, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(kvs) != deliveryLogSize {
		t.Errorf("store holds %d deliveries, want %d", len(kvs), deliveryLogSize)
	}
	log := p2.Deliveries("")
	if len(log) != deliveryLogSize || log[len(log)-1].ID != fmt.Sprintf("d%011d", deliveryLogSize+9) {
		t.Errorf("log: %d entries ending with %+v", len(log), log[len(log)-1])
	}
}

// TestSubscriberComponents: a subscriber limited to components gets only
// their updates, and incidents that affect them or name none.
func TestSubscriberComponents(t *testing.T) {
	rc := &receiver{secret: "0123456789abcdef-secret"}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	f := newFixture(t, "", Options{})
	ctx := context.Background()
	s, err := f.p.AddSubscriber(ctx, SubscriberRequest{URL: srv.URL, Components: []string{"EU01/Mobile app"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Secret) != 64 {
		t.Errorf("generated secret %q, want 64 hex characters", s.Secret)
	}
	rc.secret = s.Secret
	for _, listed := range f.p.Subscribers() {
		if listed.Secret != "" {
			t.Errorf("listing shows the secret of %s", listed.ID)
		}
	}
	steps := []func() error{
		func() error {
			_, err := f.p.SetOverride(ctx, "EU01/Web app", OverrideRequest{Status: Major})
			return err
		},
		func() error {
			_, err := f.p.SetOverride(ctx, "EU01/Mobile app", OverrideRequest{Status: Major})
			return err
		},
		func() error {
			_, err := f.p.OpenIncident(ctx, IncidentRequest{Name: "Web slow", Body: "x", Components: []string{"EU01/Web app"}})
			return err
		},
		func() error {
			_, err := f.p.OpenIncident(ctx, IncidentRequest{Name: "Mobile slow", Body: "x", Components: []string{"EU01/Mobile app"}})
			return err
		},
		func() error {
			_, err := f.p.OpenIncident(ctx, IncidentRequest{Name: "Everything slow", Body: "x"})
			return err
		},
	}
	for _, step := range steps {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "three deliveries", func() bool { return len(f.p.Deliveries(s.ID)) == 3 })
	var got []string
	for _, h := range rc.received() {
		name := ""
		if in, ok := h.body["incident"].(map[string]any); ok {
			name = in["name"].(string)
		} else {
			name = h.body["component"].(map[string]any)["name"].(string)
		}
		got = append(got, fmt.Sprintf("%s %s %v", h.event, name, h.validSig))
	}
	slices.Sort(got)
	want := []string{"component_update Mobile app true", "incident_update Everything slow true", "incident_update Mobile slow true"}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("received (-got +want):\n%s", diff)
	}
}
