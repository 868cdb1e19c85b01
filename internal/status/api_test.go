package status

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mmcdole/gofeed"
)

var (
	idRE   = regexp.MustCompile(`^[a-z0-9]{12}$`)
	timeRE = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d\d:\d\d)$`)
)

var apiPaths = []string{
	"/api/v2/summary.json", "/api/v2/status.json", "/api/v2/components.json", "/api/v2/incidents.json",
	"/api/v2/incidents/unresolved.json", "/api/v2/scheduled-maintenances.json",
	"/api/v2/scheduled-maintenances/upcoming.json", "/api/v2/scheduled-maintenances/active.json",
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func sorted(s ...string) []string {
	slices.Sort(s)
	return s
}

// Field sets of the widely used status API v2.
var (
	pageKeys      = sorted("id", "name", "url", "time_zone", "updated_at")
	componentKeys = sorted("id", "name", "status", "created_at", "updated_at", "position", "description", "showcase",
		"start_date", "group_id", "page_id", "group", "only_show_if_degraded")
	groupKeys    = sorted(append(slices.Clone(componentKeys), "components")...)
	incidentKeys = sorted("id", "name", "status", "created_at", "updated_at", "monitoring_at", "resolved_at", "impact",
		"shortlink", "started_at", "page_id", "incident_updates", "components")
	maintenanceKeys = sorted(append(slices.Clone(incidentKeys), "scheduled_for", "scheduled_until")...)
	updateKeys      = sorted("id", "status", "body", "incident_id", "created_at", "updated_at", "display_at",
		"affected_components", "deliver_notifications", "custom_tweet", "tweet_id")
)

func getJSON(t *testing.T, url string) map[string]any {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return m
}

func checkID(t *testing.T, what string, v any) {
	t.Helper()
	if s, _ := v.(string); !idRE.MatchString(s) {
		t.Errorf("%s: id %v is not 12 lowercase characters", what, v)
	}
}

func checkTime(t *testing.T, what string, v any) {
	t.Helper()
	if s, _ := v.(string); !timeRE.MatchString(s) {
		t.Errorf("%s: %v is not ISO 8601 with milliseconds and offset", what, v)
	}
}

func TestAPIShapes(t *testing.T) {
	f := newFixture(t, "", Options{IDs: newID})
	ctx := context.Background()
	in, err := f.p.OpenIncident(ctx, IncidentRequest{Name: "Slow logins", Impact: ImpactMajor, Body: "Looking into it.", Components: []string{"EU01/Web app"}})
	if err != nil {
		t.Fatal(err)
	}
	f.clock.Add(time.Minute)
	if _, err := f.p.UpdateIncident(ctx, in.ID, UpdateRequest{Status: Identified, Body: "A bad deploy."}); err != nil {
		t.Fatal(err)
	}
	m, err := f.p.ScheduleMaintenance(ctx, MaintenanceRequest{Name: "Upgrade", Components: []string{"Mobile app"},
		ScheduledFor: t0.Add(time.Hour), ScheduledUntil: t0.Add(2 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(f.p)
	defer srv.Close()

	sum := getJSON(t, srv.URL+"/api/v2/summary.json")
	if diff := cmp.Diff(keys(sum), sorted("page", "components", "incidents", "scheduled_maintenances", "status")); diff != "" {
		t.Errorf("summary keys (-got +want):\n%s", diff)
	}
	page := sum["page"].(map[string]any)
	if diff := cmp.Diff(keys(page), pageKeys); diff != "" {
		t.Errorf("page keys (-got +want):\n%s", diff)
	}
	checkID(t, "page", page["id"])
	checkTime(t, "page.updated_at", page["updated_at"])
	if diff := cmp.Diff(sum["status"], map[string]any{"indicator": "major", "description": "Partial System Outage"}); diff != "" {
		t.Errorf("status (-got +want):\n%s", diff)
	}

	comps := sum["components"].([]any)
	var groups, members int
	byID := map[string]map[string]any{}
	for _, c := range comps {
		c := c.(map[string]any)
		byID[c["id"].(string)] = c
	}
	for _, c := range comps {
		c := c.(map[string]any)
		checkID(t, "component", c["id"])
		checkTime(t, "component.created_at", c["created_at"])
		checkTime(t, "component.updated_at", c["updated_at"])
		if c["start_date"] != nil {
			t.Errorf("start_date = %v, want null", c["start_date"])
		}
		if c["group"] == true {
			groups++
			if diff := cmp.Diff(keys(c), groupKeys); diff != "" {
				t.Errorf("group keys (-got +want):\n%s", diff)
			}
			if c["group_id"] != nil {
				t.Errorf("group %v has group_id %v", c["name"], c["group_id"])
			}
			for _, id := range c["components"].([]any) {
				if child := byID[id.(string)]; child == nil || child["group_id"] != c["id"] {
					t.Errorf("group %v lists %v, whose group_id is not the group", c["name"], id)
				}
			}
			continue
		}
		members++
		if diff := cmp.Diff(keys(c), componentKeys); diff != "" {
			t.Errorf("component keys (-got +want):\n%s", diff)
		}
		if !slices.Contains(ComponentStates, c["status"].(string)) {
			t.Errorf("component status %v", c["status"])
		}
	}
	if groups != 2 || members != 3 {
		t.Errorf("got %d groups and %d components, want 2 and 3", groups, members)
	}
	// A component without a description has description null, present.
	for _, c := range comps {
		c := c.(map[string]any)
		if c["name"] == "Mobile app" {
			if v, ok := c["description"]; !ok || v != nil {
				t.Errorf("Mobile app description = %v (present %v), want null", v, ok)
			}
		}
	}

	incs := getJSON(t, srv.URL+"/api/v2/incidents.json")["incidents"].([]any)
	if len(incs) != 1 {
		t.Fatalf("incidents.json has %d incidents, want 1", len(incs))
	}
	inc := incs[0].(map[string]any)
	if diff := cmp.Diff(keys(inc), incidentKeys); diff != "" {
		t.Errorf("incident keys (-got +want):\n%s", diff)
	}
	checkID(t, "incident", inc["id"])
	if inc["monitoring_at"] != nil || inc["resolved_at"] != nil {
		t.Errorf("open incident: monitoring_at %v resolved_at %v, want null", inc["monitoring_at"], inc["resolved_at"])
	}
	if inc["impact"] != "major" || inc["status"] != "identified" {
		t.Errorf("incident impact %v status %v", inc["impact"], inc["status"])
	}
	ups := inc["incident_updates"].([]any)
	var statuses []string
	for _, u := range ups {
		u := u.(map[string]any)
		if diff := cmp.Diff(keys(u), updateKeys); diff != "" {
			t.Errorf("update keys (-got +want):\n%s", diff)
		}
		checkID(t, "update", u["id"])
		checkTime(t, "update.created_at", u["created_at"])
		if u["incident_id"] != inc["id"] || u["affected_components"] != nil || u["tweet_id"] != nil {
			t.Errorf("update %v: incident_id %v affected %v tweet_id %v", u["id"], u["incident_id"], u["affected_components"], u["tweet_id"])
		}
		statuses = append(statuses, u["status"].(string))
	}
	if diff := cmp.Diff(statuses, []string{"identified", "investigating"}); diff != "" {
		t.Errorf("incident_updates not newest first (-got +want):\n%s", diff)
	}
	if cs := inc["components"].([]any); len(cs) != 1 || cs[0].(map[string]any)["name"] != "Web app" {
		t.Errorf("incident components %v", cs)
	}
	if got := getJSON(t, srv.URL+"/api/v2/incidents/unresolved.json")["incidents"].([]any); len(got) != 1 {
		t.Errorf("unresolved.json: %d incidents, want 1", len(got))
	}

	for _, path := range []string{"/api/v2/scheduled-maintenances.json", "/api/v2/scheduled-maintenances/upcoming.json"} {
		ms := getJSON(t, srv.URL+path)["scheduled_maintenances"].([]any)
		if len(ms) != 1 {
			t.Fatalf("%s: %d maintenances, want 1", path, len(ms))
		}
		mm := ms[0].(map[string]any)
		if diff := cmp.Diff(keys(mm), maintenanceKeys); diff != "" {
			t.Errorf("%s: maintenance keys (-got +want):\n%s", path, diff)
		}
		if mm["id"] != m.ID || mm["status"] != "scheduled" || mm["impact"] != "maintenance" {
			t.Errorf("%s: %v %v %v", path, mm["id"], mm["status"], mm["impact"])
		}
		checkTime(t, "scheduled_for", mm["scheduled_for"])
		checkTime(t, "scheduled_until", mm["scheduled_until"])
	}
	if got := getJSON(t, srv.URL+"/api/v2/scheduled-maintenances/active.json")["scheduled_maintenances"].([]any); len(got) != 0 {
		t.Errorf("active.json: %d, want 0 (and an empty list, not null)", len(got))
	}
	st := getJSON(t, srv.URL+"/api/v2/status.json")
	if diff := cmp.Diff(keys(st), sorted("page", "status")); diff != "" {
		t.Errorf("status.json keys (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(keys(getJSON(t, srv.URL+"/api/v2/components.json")), sorted("page", "components")); diff != "" {
		t.Errorf("components.json keys (-got +want):\n%s", diff)
	}

	// Every document answers HEAD with its length and no body, and a
	// matching ETag with 304.
	for _, path := range append(slices.Clone(apiPaths), "/", "/index.html", "/history.html", "/history.atom", "/history.rss",
		"/assets/status.css", "/incidents/"+in.ID+".html") {
		req, _ := http.NewRequest(http.MethodHead, srv.URL+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || len(body) != 0 || resp.ContentLength <= 0 || resp.Header.Get("Etag") == "" {
			t.Errorf("HEAD %s: %d, %d body bytes, Content-Length %d, ETag %q", path, resp.StatusCode, len(body), resp.ContentLength, resp.Header.Get("Etag"))
			continue
		}
		req, _ = http.NewRequest(http.MethodGet, srv.URL+path, nil)
		req.Header.Set("If-None-Match", resp.Header.Get("Etag"))
		resp2, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp2.Body.Close()
		if resp2.StatusCode != http.StatusNotModified {
			t.Errorf("GET %s with If-None-Match: %d, want 304", path, resp2.StatusCode)
		}
	}
	resp, err := http.Post(srv.URL+"/api/v2/summary.json", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST summary.json: %d, want 405", resp.StatusCode)
	}
}

func TestFeedsParse(t *testing.T) {
	f := newFixture(t, "", Options{})
	ctx := context.Background()
	in, err := f.p.OpenIncident(ctx, IncidentRequest{Name: "Mobile sign-in fails", Impact: ImpactCritical, Body: "Investigating <errors>.", Components: []string{"Mobile app"}})
	if err != nil {
		t.Fatal(err)
	}
	f.clock.Add(time.Minute)
	if _, err := f.p.UpdateIncident(ctx, in.ID, UpdateRequest{Status: Resolved, Body: "Fixed & verified."}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.p.ScheduleMaintenance(ctx, MaintenanceRequest{Name: "Network work", ScheduledFor: t0.Add(time.Hour), ScheduledUntil: t0.Add(2 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ path, feedType string }{{"history.atom", "atom"}, {"history.rss", "rss"}} {
		t.Run(tt.path, func(t *testing.T) {
			feed, err := gofeed.NewParser().ParseString(string(f.p.Files()[tt.path]))
			if err != nil {
				t.Fatalf("parsing %s: %v", tt.path, err)
			}
			if feed.FeedType != tt.feedType {
				t.Errorf("feed type %q, want %q", feed.FeedType, tt.feedType)
			}
			var titles []string
			for _, it := range feed.Items {
				titles = append(titles, it.Title)
			}
			sort.Strings(titles)
			if diff := cmp.Diff(titles, []string{"Maintenance: Network work", "Mobile sign-in fails"}); diff != "" {
				t.Errorf("titles (-got +want):\n%s", diff)
			}
			for _, it := range feed.Items {
				if it.Title == "Mobile sign-in fails" {
					text := it.Content + it.Description
					if !strings.Contains(text, "Fixed &amp; verified.") || !strings.Contains(text, "Investigating &lt;errors&gt;.") {
						t.Errorf("incident entry content %q lacks its escaped updates", text)
					}
					if it.Link != "incidents/"+in.ID+".html" {
						t.Errorf("link %q", it.Link)
					}
				}
			}
		})
	}
}

// TestFeedTitle checks that the feeds' title says "status" once, whether
// or not the portal's title ends with it, in both feeds as parsed.
func TestFeedTitle(t *testing.T) {
	for _, tt := range []struct{ title, want string }{
		{"EU01 service status", "EU01 service status history"},
		{"EU01 Service Status", "EU01 Service Status history"},
		{"Acme status:", "Acme status history"},
		{"University services", "University services status history"},
		{"Statuspage of Acme", "Statuspage of Acme status history"},
		{"", "Service status history"}, // the default title ends with "status"
	} {
		t.Run(tt.title, func(t *testing.T) {
			cfg := testStatus
			cfg.Title = tt.title
			p := New(cfg, nil, nil, Options{Now: func() time.Time { return t0 }})
			defer p.Close()
			for _, path := range []string{"history.atom", "history.rss"} {
				feed, err := gofeed.NewParser().ParseString(string(p.Files()[path]))
				if err != nil {
					t.Fatalf("parsing %s: %v", path, err)
				}
				if feed.Title != tt.want {
					t.Errorf("%s title = %q, want %q", path, feed.Title, tt.want)
				}
			}
		})
	}
}
