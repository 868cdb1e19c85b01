package status

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode/utf8"
)

// IncidentRequest opens an incident.
type IncidentRequest struct {
	Name   string `json:"name"`
	Impact string `json:"impact"` // none, minor, major, critical (default minor)
	Status string `json:"status"` // investigating (default), identified, monitoring
	Body   string `json:"body"`
	// Components are ids, "Region/Name" or unique names.
	Components []string `json:"components"`
	// Draft keeps the incident off the public page until published.
	Draft bool `json:"draft"`
}

// UpdateRequest adds an update to an incident's timeline.
type UpdateRequest struct {
	Status string `json:"status"` // investigating, identified, monitoring, resolved
	Body   string `json:"body"`
	Impact string `json:"impact,omitempty"` // optional change of impact
	// Components, if not nil, replaces the affected components.
	Components []string `json:"components,omitempty"`
	// Publish makes a draft incident public.
	Publish bool `json:"publish,omitempty"`
}

// MaintenanceRequest schedules a maintenance.
type MaintenanceRequest struct {
	Name           string    `json:"name"`
	Body           string    `json:"body"`
	Components     []string  `json:"components"`
	ScheduledFor   time.Time `json:"scheduled_for"`
	ScheduledUntil time.Time `json:"scheduled_until"`
	// Drain drains pool members while the window runs; without
	// Components, the components of the affected pools are affected.
	Drain *MaintenanceDrain `json:"drain,omitempty"`
}

// OverrideRequest sets a component's state by hand.
type OverrideRequest struct {
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
}

// ComponentState is a component as the management API reports it.
type ComponentState struct {
	ID             string `json:"id"`
	Name           string `json:"name"`
	Region         string `json:"region,omitempty"`
	Status         string `json:"status"`
	Health         string `json:"health"` // state from health after hysteresis
	HealthyMembers int    `json:"healthy_members"`
	TotalMembers   int    `json:"total_members"`
	// Requests and Failures are counted over the error-rate window, by
	// every node of the fleet; ErrorRate is their ratio in percent.
	Requests  uint64    `json:"window_requests"`
	Failures  uint64    `json:"window_failures"`
	ErrorRate float64   `json:"error_rate"`
	Override  *Override `json:"override,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
}

// SubscriberRequest registers a webhook endpoint.
type SubscriberRequest struct {
	URL string `json:"url"`
	// Secret keys the signatures; empty generates one, returned once.
	Secret string `json:"secret,omitempty"`
	// Components limits the updates to these components (ids,
	// "Region/Name" or unique names); empty means every update.
	Components []string `json:"components,omitempty"`
}

func checkText(field, s string, max int, required bool) error {
	switch {
	case required && strings.TrimSpace(s) == "":
		return inputErr(field, "is required")
	case len(s) > max:
		return inputErr(field, "is %d bytes; the limit is %d", len(s), max)
	case !utf8.ValidString(s):
		return inputErr(field, "is not valid UTF-8")
	}
	return nil
}

func checkOneOf(field, s string, set []string) error {
	if !slices.Contains(set, s) {
		return inputErr(field, "%q must be one of %s", s, strings.Join(set, ", "))
	}
	return nil
}

// resolveComponentLocked finds a component by id, "Region/Name" or a
// name that is unique across regions (case-insensitive).
func (p *Portal) resolveComponentLocked(field, ref string) (*component, error) {
	if c := p.byID[ref]; c != nil {
		return c, nil
	}
	var found []*component
	for _, c := range p.comps {
		if strings.EqualFold(c.Region+"/"+c.Name, ref) || strings.EqualFold(c.Name, ref) {
			found = append(found, c)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return nil, inputErr(field, "%q is not a configured component (use an id, Region/Name or a unique name)", ref)
	}
	return nil, inputErr(field, "%q names components in %d regions; say Region/Name", ref, len(found))
}

func (p *Portal) resolveComponentsLocked(field string, refs []string) ([]string, error) {
	ids := []string{}
	for i, ref := range refs {
		c, err := p.resolveComponentLocked(fmt.Sprintf("%s[%d]", field, i), ref)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(ids, c.ID) {
			ids = append(ids, c.ID)
		}
	}
	return ids, nil
}

// changedLocked re-evaluates, renders and announces after a write; the
// leader also records a change of component state in the store.
func (p *Portal) changedLocked(now time.Time) {
	if p.leading {
		p.accountLocked(now) // the time so far belongs to the old states
	}
	if p.reevaluateLocked(now) && p.leading {
		p.flushDue = "writing status state"
	}
	p.updatedAt = now
	p.renderLocked()
}

// OpenIncident opens an incident with its first update.
func (p *Portal) OpenIncident(ctx context.Context, req IncidentRequest) (Incident, error) {
	if req.Impact == "" {
		req.Impact = ImpactMinor
	}
	if req.Status == "" {
		req.Status = Investigating
	}
	if err := errors.Join(checkText("name", req.Name, MaxNameBytes, true), checkText("body", req.Body, MaxBodyBytes, true),
		checkOneOf("impact", req.Impact, Impacts), checkOneOf("status", req.Status, []string{Investigating, Identified, Monitoring})); err != nil {
		return Incident{}, firstInput(err)
	}
	p.mu.Lock()
	defer p.unlock()
	ids, err := p.resolveComponentsLocked("components", req.Components)
	if err != nil {
		return Incident{}, err
	}
	now := p.now()
	in := &Incident{ID: p.id(), Name: strings.TrimSpace(req.Name), Status: req.Status, Impact: req.Impact, Draft: req.Draft,
		Components: ids, CreatedAt: now, UpdatedAt: now,
		Updates: []Update{{ID: p.id(), Status: req.Status, Body: req.Body, CreatedAt: now}}}
	if req.Status == Monitoring {
		in.MonitoringAt = &now
	}
	if err := saveLocked(ctx, p, p.incidents, keyIncidents, in.ID, in, now); err != nil {
		return Incident{}, err
	}
	return *in, nil
}

// findLocked returns the incident or maintenance id of kept.
func findLocked[T any](kept map[string]*T, kind, id string) (*T, error) {
	if v := kept[id]; v != nil {
		return v, nil
	}
	return nil, &NotFoundError{Kind: kind, ID: id}
}

// saveLocked writes a new or changed incident or maintenance v under
// prefix+id (compare-and-swap against the revision we hold), keeps it in
// kept, queues its announcement and re-renders.
func saveLocked[T any](ctx context.Context, p *Portal, kept map[string]*T, prefix, id string, v *T, now time.Time) error {
	if err := p.casLocked(ctx, prefix+id, v); err != nil {
		return err
	}
	kept[id] = v
	p.events = append(p.events, pendingEvent{kind: "incident_update", id: id})
	p.changedLocked(now)
	return nil
}

// withUpdate returns a timeline with u appended, leaving ups unchanged
// (a reader may hold the record it belongs to).
func withUpdate(ups []Update, u Update) []Update {
	return append(slices.Clone(ups), u)
}

// firstInput returns the first error of a join, so a client sees one
// field at a time in the order the request lists them.
func firstInput(err error) error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		if errs := j.Unwrap(); len(errs) > 0 {
			return errs[0]
		}
	}
	return err
}

// UpdateIncident adds an update; an update on a resolved incident is
// refused.
func (p *Portal) UpdateIncident(ctx context.Context, id string, req UpdateRequest) (Incident, error) {
	if err := errors.Join(checkOneOf("status", req.Status, IncidentStatuses), checkText("body", req.Body, MaxBodyBytes, true)); err != nil {
		return Incident{}, firstInput(err)
	}
	if req.Impact != "" {
		if err := checkOneOf("impact", req.Impact, Impacts); err != nil {
			return Incident{}, err
		}
	}
	p.mu.Lock()
	defer p.unlock()
	cur, err := findLocked(p.incidents, "incident", id)
	if err != nil {
		return Incident{}, err
	}
	if !cur.Unresolved() {
		return Incident{}, inputErr("status", "incident %s is %s; open a new incident instead of updating it", id, cur.Status)
	}
	in := *cur
	if req.Components != nil {
		ids, err := p.resolveComponentsLocked("components", req.Components)
		if err != nil {
			return Incident{}, err
		}
		in.Components = ids
	}
	now := p.now()
	if req.Impact != "" {
		in.Impact = req.Impact
	}
	if req.Publish {
		in.Draft = false
	}
	in.Status, in.UpdatedAt = req.Status, now
	switch req.Status {
	case Monitoring:
		if in.MonitoringAt == nil {
			in.MonitoringAt = &now
		}
	case Resolved:
		in.ResolvedAt = &now
	}
	in.Updates = withUpdate(cur.Updates, Update{ID: p.id(), Status: req.Status, Body: req.Body, CreatedAt: now})
	if err := saveLocked(ctx, p, p.incidents, keyIncidents, id, &in, now); err != nil {
		return Incident{}, err
	}
	return in, nil
}

// Incidents returns every incident, drafts included, newest first.
func (p *Portal) Incidents() []Incident {
	p.mu.Lock()
	defer p.unlock()
	out := make([]Incident, 0, len(p.incidents))
	for _, in := range p.incidents {
		out = append(out, *in)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.After(out[j].CreatedAt) })
	return out
}

// Incident returns one incident.
func (p *Portal) Incident(id string) (Incident, error) {
	p.mu.Lock()
	defer p.unlock()
	in, err := findLocked(p.incidents, "incident", id)
	if err != nil {
		return Incident{}, err
	}
	return *in, nil
}

// ReportSections are the sections of a post-incident report, in order.
var ReportSections = []string{
	"Introduction",
	"Event Timeline",
	"Root Cause Analysis",
	"Technical Action Items and Preventive Measures",
	"Customer Communication",
}

// PostmortemSkeleton returns a post-incident report in Markdown with every
// section, the timeline prefilled from the incident's updates.
func (p *Portal) PostmortemSkeleton(id string) (string, error) {
	in, err := p.Incident(id)
	if err != nil {
		return "", err
	}
	p.mu.Lock()
	names := p.names(in.Components)
	p.unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "# Post-incident report: %s\n\n", in.Name)
	for _, sec := range ReportSections {
		fmt.Fprintf(&b, "## %s\n\n", sec)
		switch sec {
		case "Introduction":
			affected := "no specific component"
			if len(names) > 0 {
				affected = strings.Join(names, ", ")
			}
			end := "ongoing"
			if in.ResolvedAt != nil {
				end = in.ResolvedAt.UTC().Format("2006-01-02 15:04 UTC")
			}
			fmt.Fprintf(&b, "From %s to %s, %s was affected (impact: %s). _Describe what users experienced._\n\n",
				in.CreatedAt.UTC().Format("2006-01-02 15:04 UTC"), end, affected, in.Impact)
		case "Event Timeline":
			b.WriteString("| Time (UTC) | Status | Update |\n|---|---|---|\n")
			for _, u := range in.public().Updates { // a report is published: no internal text
				fmt.Fprintf(&b, "| %s | %s | %s |\n", u.CreatedAt.UTC().Format("2006-01-02 15:04"), StatusText(u.Status),
					strings.NewReplacer("|", `\|`, "\n", " ").Replace(u.Body))
			}
			b.WriteString("\n")
		default:
			b.WriteString("_To be written._\n\n")
		}
	}
	return b.String(), nil
}

// PublishPostmortem publishes the report of a resolved incident and sets
// its status to postmortem.
func (p *Portal) PublishPostmortem(ctx context.Context, id, markdown string) (Incident, error) {
	if err := checkText("markdown", markdown, MaxPostmortemBytes, true); err != nil {
		return Incident{}, err
	}
	p.mu.Lock()
	defer p.unlock()
	cur, err := findLocked(p.incidents, "incident", id)
	if err != nil {
		return Incident{}, err
	}
	if cur.Unresolved() {
		return Incident{}, inputErr("status", "incident %s is %s; resolve it before publishing its report", id, cur.Status)
	}
	now := p.now()
	in := *cur
	in.Status, in.Postmortem, in.PostmortemAt, in.UpdatedAt, in.Draft = Postmortem, markdown, &now, now, false
	if err := saveLocked(ctx, p, p.incidents, keyIncidents, id, &in, now); err != nil {
		return Incident{}, err
	}
	return in, nil
}

// ScheduleMaintenance schedules a maintenance window.
func (p *Portal) ScheduleMaintenance(ctx context.Context, req MaintenanceRequest) (MaintenanceWindow, error) {
	if err := checkText("name", req.Name, MaxNameBytes, true); err != nil {
		return MaintenanceWindow{}, err
	}
	if err := checkText("body", req.Body, MaxBodyBytes, false); err != nil {
		return MaintenanceWindow{}, err
	}
	switch {
	case req.ScheduledFor.IsZero():
		return MaintenanceWindow{}, inputErr("scheduled_for", "is required")
	case req.ScheduledUntil.IsZero():
		return MaintenanceWindow{}, inputErr("scheduled_until", "is required")
	case !req.ScheduledUntil.After(req.ScheduledFor):
		return MaintenanceWindow{}, inputErr("scheduled_until", "%s is not after scheduled_for %s",
			req.ScheduledUntil.UTC().Format(time.RFC3339), req.ScheduledFor.UTC().Format(time.RFC3339))
	}
	drainPools, err := p.checkMaintenanceDrain(req.Drain)
	if err != nil {
		return MaintenanceWindow{}, err
	}
	p.mu.Lock()
	defer p.unlock()
	ids, err := p.resolveComponentsLocked("components", req.Components)
	if err != nil {
		return MaintenanceWindow{}, err
	}
	if req.Drain != nil && len(req.Components) == 0 {
		ids = p.componentsOfPoolsLocked(drainPools)
	}
	now := p.now()
	body := req.Body
	if body == "" {
		body = "Maintenance is scheduled."
	}
	m := &MaintenanceWindow{ID: p.id(), Name: strings.TrimSpace(req.Name), Status: Scheduled, Components: ids,
		ScheduledFor: req.ScheduledFor.UTC(), ScheduledUntil: req.ScheduledUntil.UTC(), CreatedAt: now, UpdatedAt: now,
		Updates: []Update{{ID: p.id(), Status: Scheduled, Body: body, CreatedAt: now}}}
	if req.Drain != nil {
		d := *req.Drain
		m.Drain, m.DrainState = &d, DrainPending
	}
	if err := saveLocked(ctx, p, p.maints, keyMaintenances, m.ID, m, now); err != nil {
		return MaintenanceWindow{}, err
	}
	return *m, nil
}

// SetMaintenanceStatus moves a maintenance to in_progress, verifying or
// completed with an update.
func (p *Portal) SetMaintenanceStatus(ctx context.Context, id, status, body string) (MaintenanceWindow, error) {
	if err := checkOneOf("status", status, []string{InProgress, Verifying, Completed}); err != nil {
		return MaintenanceWindow{}, err
	}
	if err := checkText("body", body, MaxBodyBytes, false); err != nil {
		return MaintenanceWindow{}, err
	}
	p.mu.Lock()
	defer p.unlock()
	cur, err := findLocked(p.maints, "maintenance", id)
	if err != nil {
		return MaintenanceWindow{}, err
	}
	if cur.Status == Completed {
		return MaintenanceWindow{}, inputErr("status", "maintenance %s is already completed", id)
	}
	if body == "" {
		body = map[string]string{InProgress: "Maintenance is in progress.", Verifying: "Maintenance work is done; we are verifying.",
			Completed: "The scheduled maintenance has been completed."}[status]
	}
	now := p.now()
	m := *cur
	if extra, ok := p.maintenanceDrainLocked(&m, status); !ok {
		p.recordRefusalLocked(&m)
		return MaintenanceWindow{}, inputErr("drain", "%s", m.DrainError)
	} else if extra != "" {
		body += " " + extra
	}
	m.Updates = withUpdate(cur.Updates, Update{ID: p.id(), Status: status, Body: body, CreatedAt: now})
	setMaintStatus(&m, status, now)
	if err := saveLocked(ctx, p, p.maints, keyMaintenances, id, &m, now); err != nil {
		return MaintenanceWindow{}, err
	}
	return m, nil
}

// Maintenances returns every maintenance, soonest first.
func (p *Portal) Maintenances() []MaintenanceWindow {
	p.mu.Lock()
	defer p.unlock()
	var out []MaintenanceWindow
	for _, m := range p.sortedMaintenancesLocked() {
		out = append(out, *m)
	}
	return out
}

// SetOverride pins a component's state until ClearOverride.
func (p *Portal) SetOverride(ctx context.Context, ref string, req OverrideRequest) (Override, error) {
	if err := checkOneOf("status", req.Status, ComponentStates); err != nil {
		return Override{}, err
	}
	if err := checkText("reason", req.Reason, MaxBodyBytes, false); err != nil {
		return Override{}, err
	}
	p.mu.Lock()
	defer p.unlock()
	c, err := p.resolveComponentLocked("component", ref)
	if err != nil {
		return Override{}, err
	}
	now := p.now()
	o := Override{Component: c.ID, Status: req.Status, Reason: req.Reason, SetAt: now}
	if err := p.putLocked(ctx, keyOverrides+c.ID, o); err != nil {
		return Override{}, err
	}
	p.overrides[c.ID] = o
	p.changedLocked(now)
	return o, nil
}

// ClearOverride returns a component to its health-driven state.
func (p *Portal) ClearOverride(ctx context.Context, ref string) error {
	p.mu.Lock()
	defer p.unlock()
	c, err := p.resolveComponentLocked("component", ref)
	if err != nil {
		return err
	}
	if _, ok := p.overrides[c.ID]; !ok {
		return &NotFoundError{Kind: "override of component", ID: c.Name}
	}
	if err := p.deleteLocked(ctx, keyOverrides+c.ID); err != nil {
		return err
	}
	delete(p.overrides, c.ID)
	p.changedLocked(p.now())
	return nil
}

// Components returns every component's state.
func (p *Portal) Components() []ComponentState {
	p.mu.Lock()
	defer p.unlock()
	out := make([]ComponentState, 0, len(p.comps))
	for _, c := range p.comps {
		cs := ComponentState{ID: c.ID, Name: c.Name, Region: c.Region, Status: c.status, Health: c.track.shown,
			HealthyMembers: c.healthy, TotalMembers: c.total, UpdatedAt: c.updatedAt,
			Requests: c.requests, Failures: c.failures, ErrorRate: math.Round(errorPercent(c.requests, c.failures)*100) / 100}
		if o, ok := p.overrides[c.ID]; ok {
			cs.Override = &o
		}
		out = append(out, cs)
	}
	return out
}

// AddSubscriber registers a webhook endpoint. The answer carries the
// secret (generated when the request has none); later listings do not.
func (p *Portal) AddSubscriber(ctx context.Context, req SubscriberRequest) (Subscriber, error) {
	u, err := url.Parse(req.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return Subscriber{}, inputErr("url", "%q is not an absolute http(s) URL", req.URL)
	}
	if err := p.guard.CheckURL(ctx, u); err != nil {
		return Subscriber{}, inputErr("url", "%v", err)
	}
	secret := req.Secret
	if secret == "" {
		secret = newSecret()
	} else if len(secret) < 16 {
		return Subscriber{}, inputErr("secret", "is %d characters; use at least 16 (or none to have one generated)", len(secret))
	}
	p.mu.Lock()
	defer p.unlock()
	ids, err := p.resolveComponentsLocked("components", req.Components)
	if err != nil {
		return Subscriber{}, err
	}
	if len(ids) == 0 {
		ids = nil
	}
	s := Subscriber{ID: p.id(), URL: u.String(), Secret: secret, Components: ids, CreatedAt: p.now()}
	if err := p.putLocked(ctx, keyWebhooks+s.ID, p.storedSubscriber(s)); err != nil {
		return Subscriber{}, err
	}
	p.subs[s.ID] = s
	return s, nil
}

// newSecret returns 32 random bytes in hex.
func newSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand does not fail on supported platforms
	return hex.EncodeToString(b)
}

// RemoveSubscriber unregisters a webhook endpoint.
func (p *Portal) RemoveSubscriber(ctx context.Context, id string) error {
	p.mu.Lock()
	defer p.unlock()
	if _, ok := p.subs[id]; !ok {
		return &NotFoundError{Kind: "subscriber", ID: id}
	}
	if err := p.deleteLocked(ctx, keyWebhooks+id); err != nil {
		return err
	}
	delete(p.subs, id)
	return nil
}

// Subscribers returns the webhook endpoints, secrets removed.
func (p *Portal) Subscribers() []Subscriber {
	p.mu.Lock()
	defer p.unlock()
	out := make([]Subscriber, 0, len(p.subs))
	for _, s := range p.subs {
		s.Secret = ""
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out
}

// Deliveries returns the webhook delivery log (the last 500 attempts of
// the fleet), oldest first, of one subscriber or of all ("").
func (p *Portal) Deliveries(subscriber string) []Delivery { return p.hooks.log.list(subscriber) }

func (p *Portal) hasSubscriber(id string) bool {
	p.mu.Lock()
	defer p.unlock()
	_, ok := p.subs[id]
	return ok
}
