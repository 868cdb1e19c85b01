package status

import (
	"slices"
	"sort"
	"time"
)

// The JSON shapes of the widely used public status API v2. Field names,
// value sets and null handling follow that API so existing clients work.

// TimeLayout is the API's timestamp format: ISO 8601 with milliseconds and
// a zone offset ("Z" for UTC).
const TimeLayout = "2006-01-02T15:04:05.000Z07:00"

// APITime is a timestamp in TimeLayout; a nil *APITime is JSON null.
type APITime time.Time

// MarshalJSON writes the time in TimeLayout.
func (t APITime) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, len(TimeLayout)+2)
	b = append(b, '"')
	b = time.Time(t).UTC().AppendFormat(b, TimeLayout)
	return append(b, '"'), nil
}

// UnmarshalJSON reads a time in RFC 3339 (with or without fractions).
func (t *APITime) UnmarshalJSON(b []byte) error {
	var tt time.Time
	if err := tt.UnmarshalJSON(b); err != nil {
		return err
	}
	*t = APITime(tt)
	return nil
}

func apiTime(t time.Time) APITime { return APITime(t) }

func apiTimePtr(t *time.Time) *APITime {
	if t == nil || t.IsZero() {
		return nil
	}
	a := APITime(*t)
	return &a
}

// APIPage is the "page" object.
type APIPage struct {
	ID        string  `json:"id"`
	Name      string  `json:"name"`
	URL       string  `json:"url"`
	TimeZone  string  `json:"time_zone"`
	UpdatedAt APITime `json:"updated_at"`
}

// APIStatus is the overall "status" object.
type APIStatus struct {
	Indicator   string `json:"indicator"` // none, minor, major, critical, maintenance
	Description string `json:"description"`
}

// APIComponent is a component or, with Group true, a component group.
type APIComponent struct {
	ID                 string   `json:"id"`
	Name               string   `json:"name"`
	Status             string   `json:"status"`
	CreatedAt          APITime  `json:"created_at"`
	UpdatedAt          APITime  `json:"updated_at"`
	Position           int      `json:"position"`
	Description        *string  `json:"description"`
	Showcase           bool     `json:"showcase"`
	StartDate          *string  `json:"start_date"`
	GroupID            *string  `json:"group_id"`
	PageID             string   `json:"page_id"`
	Group              bool     `json:"group"`
	OnlyShowIfDegraded bool     `json:"only_show_if_degraded"`
	Components         []string `json:"components,omitempty"`
}

// APIAffected is one entry of an update's affected_components.
type APIAffected struct {
	Code      string `json:"code"`
	Name      string `json:"name"`
	OldStatus string `json:"old_status"`
	NewStatus string `json:"new_status"`
}

// APIUpdate is one incident or maintenance update.
type APIUpdate struct {
	ID                   string        `json:"id"`
	Status               string        `json:"status"`
	Body                 string        `json:"body"`
	IncidentID           string        `json:"incident_id"`
	CreatedAt            APITime       `json:"created_at"`
	UpdatedAt            APITime       `json:"updated_at"`
	DisplayAt            APITime       `json:"display_at"`
	AffectedComponents   []APIAffected `json:"affected_components"`
	DeliverNotifications bool          `json:"deliver_notifications"`
	CustomTweet          *string       `json:"custom_tweet"`
	TweetID              *string       `json:"tweet_id"`
}

// APIIncident is an incident or, with ScheduledFor set, a scheduled
// maintenance.
type APIIncident struct {
	ID              string         `json:"id"`
	Name            string         `json:"name"`
	Status          string         `json:"status"`
	CreatedAt       APITime        `json:"created_at"`
	UpdatedAt       *APITime       `json:"updated_at"`
	MonitoringAt    *APITime       `json:"monitoring_at"`
	ResolvedAt      *APITime       `json:"resolved_at"`
	Impact          string         `json:"impact"`
	Shortlink       string         `json:"shortlink"`
	StartedAt       APITime        `json:"started_at"`
	PageID          string         `json:"page_id"`
	IncidentUpdates []APIUpdate    `json:"incident_updates"`
	Components      []APIComponent `json:"components"`
	ScheduledFor    *APITime       `json:"scheduled_for,omitempty"`
	ScheduledUntil  *APITime       `json:"scheduled_until,omitempty"`
}

// Summary is /api/v2/summary.json.
type Summary struct {
	Page                  APIPage        `json:"page"`
	Components            []APIComponent `json:"components"`
	Incidents             []APIIncident  `json:"incidents"`
	ScheduledMaintenances []APIIncident  `json:"scheduled_maintenances"`
	Status                APIStatus      `json:"status"`
}

// StatusDoc is /api/v2/status.json.
type StatusDoc struct {
	Page   APIPage   `json:"page"`
	Status APIStatus `json:"status"`
}

// ComponentsDoc is /api/v2/components.json.
type ComponentsDoc struct {
	Page       APIPage        `json:"page"`
	Components []APIComponent `json:"components"`
}

// IncidentsDoc is /api/v2/incidents.json and incidents/unresolved.json.
type IncidentsDoc struct {
	Page      APIPage       `json:"page"`
	Incidents []APIIncident `json:"incidents"`
}

// MaintenancesDoc is /api/v2/scheduled-maintenances.json and its upcoming
// and active variants.
type MaintenancesDoc struct {
	Page                  APIPage       `json:"page"`
	ScheduledMaintenances []APIIncident `json:"scheduled_maintenances"`
}

// apiListLimit is how many incidents or maintenances the list endpoints carry.
const apiListLimit = 50

// apiModel is everything the JSON documents are built from, computed once
// per render.
type apiModel struct {
	page        APIPage
	status      APIStatus
	components  []APIComponent
	compByID    map[string]APIComponent
	incidents   []APIIncident // published, newest first
	unresolved  []APIIncident
	maints      []APIIncident // newest scheduled first
	upcoming    []APIIncident
	active      []APIIncident
	summaryMain []APIIncident
}

func (p *Portal) apiComponentLocked(c *component) APIComponent {
	ac := APIComponent{
		ID: c.ID, Name: c.Name, Status: c.status, CreatedAt: apiTime(p.createdAt()), UpdatedAt: apiTime(c.updatedAt),
		Position: c.Position, Showcase: true, PageID: p.pageID,
	}
	if c.Description != "" {
		d := c.Description
		ac.Description = &d
	}
	if c.GroupID != "" {
		g := c.GroupID
		ac.GroupID = &g
	}
	return ac
}

// createdAt is the creation time reported for components: the first day of
// recorded history, or the portal's start.
func (p *Portal) createdAt() time.Time {
	first := p.started
	for day := range p.hist.days {
		if t, err := time.Parse(dayLayout, day); err == nil && t.Before(first) {
			first = t
		}
	}
	return first
}

func (p *Portal) buildAPILocked(now time.Time) *apiModel {
	m := &apiModel{compByID: map[string]APIComponent{}}
	m.page = APIPage{ID: p.pageID, Name: p.title, URL: p.url, TimeZone: "Etc/UTC", UpdatedAt: apiTime(p.updatedAt)}
	if m.page.URL == "" {
		m.page.URL = "/"
	}
	// Groups first in position order, each followed by its components; then
	// components outside any region.
	for _, g := range p.groups {
		worst := Operational
		ids := make([]string, len(g.Components))
		var updated time.Time
		for i, c := range g.Components {
			ids[i] = c.ID
			if rank(c.status) > rank(worst) || (worst == Operational && c.status == Maintenance) {
				worst = c.status
			}
			if c.updatedAt.After(updated) {
				updated = c.updatedAt
			}
		}
		m.components = append(m.components, APIComponent{
			ID: g.ID, Name: g.Name, Status: worst, CreatedAt: apiTime(p.createdAt()), UpdatedAt: apiTime(updated),
			Position: g.Position, PageID: p.pageID, Group: true, Components: ids,
		})
		for _, c := range g.Components {
			ac := p.apiComponentLocked(c)
			m.components = append(m.components, ac)
			m.compByID[c.ID] = ac
		}
	}
	for _, c := range p.comps {
		if c.GroupID == "" {
			ac := p.apiComponentLocked(c)
			m.components = append(m.components, ac)
			m.compByID[c.ID] = ac
		}
	}

	worst := Operational
	maintenance := false
	for _, c := range p.comps {
		if rank(c.status) > rank(worst) {
			worst = c.status
		}
		if c.status == Maintenance {
			maintenance = true
		}
	}
	ind := ImpactNone
	switch worst {
	case Degraded:
		ind = ImpactMinor
	case Partial:
		ind = ImpactMajor
	case Major:
		ind = ImpactCritical
	}
	for _, in := range p.sortedIncidentsLocked() {
		ai := p.apiIncidentLocked(in, m)
		m.incidents = append(m.incidents, ai)
		if in.Unresolved() {
			m.unresolved = append(m.unresolved, ai)
			if impactRank(in.Impact) > impactRank(ind) {
				ind = in.Impact
			}
		}
	}
	for _, mw := range p.sortedMaintenancesLocked() {
		ai := p.apiMaintenanceLocked(mw, m)
		m.maints = append(m.maints, ai)
		switch {
		case mw.Status == InProgress || mw.Status == Verifying:
			m.active = append(m.active, ai)
			maintenance = true
		case mw.Status == Scheduled && now.Before(mw.ScheduledUntil):
			m.upcoming = append(m.upcoming, ai)
		}
	}
	// The summary lists maintenance in progress, then upcoming, soonest first.
	m.summaryMain = append(slices.Clone(m.active), m.upcoming...)
	if ind == ImpactNone && maintenance {
		ind = "maintenance"
	}
	m.status = APIStatus{Indicator: ind, Description: indicatorText(ind)}
	if ind == ImpactMinor && worst == Degraded {
		m.status.Description = "Degraded Performance"
	}
	return m
}

// sortedIncidentsLocked returns published incidents as readers see them
// (without internal updates), newest first. Every public output (pages,
// feeds, JSON API, export) reads incidents through it, webhooks through
// public too.
func (p *Portal) sortedIncidentsLocked() []*Incident {
	out := make([]*Incident, 0, len(p.incidents))
	for _, in := range p.incidents {
		if !in.Draft {
			out = append(out, in.public())
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.After(out[j].CreatedAt)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// sortedMaintenancesLocked returns maintenance, latest window first for
// completed ones and soonest first for the rest.
func (p *Portal) sortedMaintenancesLocked() []*MaintenanceWindow {
	out := make([]*MaintenanceWindow, 0, len(p.maints))
	for _, m := range p.maints {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if (a.Status == Completed) != (b.Status == Completed) {
			return b.Status == Completed
		}
		if !a.ScheduledFor.Equal(b.ScheduledFor) {
			if a.Status == Completed {
				return a.ScheduledFor.After(b.ScheduledFor)
			}
			return a.ScheduledFor.Before(b.ScheduledFor)
		}
		return a.ID < b.ID
	})
	return out
}

func (p *Portal) shortlink(id string) string {
	return p.url + "incidents/" + id + ".html"
}

func (p *Portal) apiUpdates(parent string, ups []Update) []APIUpdate {
	out := make([]APIUpdate, len(ups))
	for i, u := range ups {
		au := APIUpdate{ID: u.ID, Status: u.Status, Body: u.Body, IncidentID: parent,
			CreatedAt: apiTime(u.CreatedAt), UpdatedAt: apiTime(u.CreatedAt), DisplayAt: apiTime(u.CreatedAt)}
		for _, a := range u.Affected {
			au.AffectedComponents = append(au.AffectedComponents, APIAffected(a))
		}
		out[len(ups)-1-i] = au // newest first
	}
	return out
}

func (p *Portal) apiIncidentLocked(in *Incident, m *apiModel) APIIncident {
	upd := apiTime(in.UpdatedAt)
	ai := APIIncident{
		ID: in.ID, Name: in.Name, Status: in.Status, CreatedAt: apiTime(in.CreatedAt), UpdatedAt: &upd,
		MonitoringAt: apiTimePtr(in.MonitoringAt), ResolvedAt: apiTimePtr(in.ResolvedAt), Impact: in.Impact,
		Shortlink: p.shortlink(in.ID), StartedAt: apiTime(in.CreatedAt), PageID: p.pageID,
		IncidentUpdates: p.apiUpdates(in.ID, in.Updates), Components: []APIComponent{},
	}
	for _, id := range in.Components {
		if c, ok := m.compByID[id]; ok {
			ai.Components = append(ai.Components, c)
		}
	}
	return ai
}

func (p *Portal) apiMaintenanceLocked(mw *MaintenanceWindow, m *apiModel) APIIncident {
	upd := apiTime(mw.UpdatedAt)
	from, until := apiTime(mw.ScheduledFor), apiTime(mw.ScheduledUntil)
	ai := APIIncident{
		ID: mw.ID, Name: mw.Name, Status: mw.Status, CreatedAt: apiTime(mw.CreatedAt), UpdatedAt: &upd,
		ResolvedAt: apiTimePtr(mw.CompletedAt), Impact: "maintenance", Shortlink: p.shortlink(mw.ID),
		StartedAt: apiTime(mw.ScheduledFor), PageID: p.pageID, IncidentUpdates: p.apiUpdates(mw.ID, mw.Updates),
		Components: []APIComponent{}, ScheduledFor: &from, ScheduledUntil: &until,
	}
	for _, id := range mw.Components {
		if c, ok := m.compByID[id]; ok {
			ai.Components = append(ai.Components, c)
		}
	}
	return ai
}

func limit(list []APIIncident) []APIIncident {
	if list == nil {
		return []APIIncident{}
	}
	if len(list) > apiListLimit {
		return list[:apiListLimit]
	}
	return list
}
