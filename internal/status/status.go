// Package status is Gatehouse's public status portal: components grouped by
// region whose state follows the health checks of the pools behind them
// (with hysteresis and operator overrides), incidents with their timelines
// and post-incident reports, scheduled maintenance, 90 days of history, and
// the ways to read them: HTML pages without JavaScript, Atom and RSS feeds,
// JSON compatible with the widely used public status API v2, webhooks and
// a static export.
//
// Everything a reader fetches is rendered once per change into an
// immutable site (a map from path to bytes) and served from memory.
//
// # Fleet
//
// Several nodes may share one store (etcd). Each node publishes its own
// observation of its pools (members up, cumulative request and failure
// counters, with its timestamp) under status/nodes/<node>. One node at a
// time leads (Lead, run under the fleet-once election; a single node
// always leads): it merges the fresh observations of every node (stale
// ones, older than three publish intervals, are ignored), decides
// component states with hysteresis, writes them under status/state with
// the history, opens draft incidents, advances maintenance and delivers
// webhooks. Every node renders the site from what the store holds, so
// every node shows the same page.
//
// A component's automatic state is the worse of the state from the share
// of healthy members (summed over the nodes' observations) and the state
// from the error rate: failed over answered requests of its pools over a
// sliding window (config.ErrorRate), ignored while the window holds fewer
// than a minimum number of requests.
package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"gatehouse/internal/config"
	"gatehouse/internal/loop"
	"gatehouse/internal/store"
	"gatehouse/internal/webhook"
)

// Member is one backend's health.
type Member struct {
	Address string `json:"address"`
	Up      bool   `json:"up"`
}

// Pool is a pool's live health and its cumulative request counters.
type Pool struct {
	Name    string   `json:"name"`
	Members []Member `json:"members"`
	// Requests and Failures count the requests the pool answered and
	// those that failed since the process started; they only grow (a
	// drop is taken for a restart).
	Requests uint64 `json:"requests"`
	Failures uint64 `json:"failures"`
}

// Source returns the live state of every pool.
type Source func() []Pool

// Defaults of Options and config fields left empty.
const (
	DefaultHysteresis     = 30 * time.Second
	DefaultInterval       = time.Second
	DefaultHistoryFlush   = time.Minute
	DefaultWebhookBackoff = 2 * time.Second
	DefaultWebhookTries   = 6
	// DefaultPublish is how often a node publishes its observation when
	// nothing changed; a change of member health is published at once.
	DefaultPublish = 5 * time.Second
	// StaleAfter observations (in publish intervals) are ignored.
	StaleAfter = 3
	// HistoryDays is how many days of history the page shows; the store
	// keeps HistoryKeepDays.
	HistoryDays     = 90
	HistoryKeepDays = 400
)

// Store keys, all under KeyPrefix.
const (
	KeyPrefix       = "status/"
	keyIncidents    = KeyPrefix + "incidents/"
	keyMaintenances = KeyPrefix + "maintenances/"
	keyOverrides    = KeyPrefix + "overrides/"
	keyWebhooks     = KeyPrefix + "webhooks/"
	keyHistory      = KeyPrefix + "history/"
	keyNodes        = KeyPrefix + "nodes/"      // one observation per node
	keyState        = KeyPrefix + "state"       // the leader's decisions
	keyDeliveries   = KeyPrefix + "deliveries/" // the webhook delivery log
)

// Options configures a Portal. Every field is optional.
type Options struct {
	Logger *slog.Logger
	// Now is the clock (default time.Now); tests inject one.
	Now func() time.Time
	// Store keeps incidents, maintenance, overrides, subscribers and
	// history; nil keeps them in memory only.
	Store store.Store
	// Interval is how often Run samples pool health (default 1s).
	Interval time.Duration
	// HistoryFlush is how often accumulated history is written to the
	// store (default 1m; always on Close).
	HistoryFlush time.Duration
	// Secrets seals webhook secrets in the store (the node's key-encryption
	// key, *certs.KEK); nil keeps them in clear, for portals in memory and
	// tests.
	Secrets Sealer
	// WebhookBackoff is the first retry delay, doubled per attempt (default 2s).
	WebhookBackoff time.Duration
	// WebhookTries is the number of attempts per delivery (default 6).
	WebhookTries int
	// IDs generates the ids of new incidents, updates and maintenance
	// (default: random 12-character lowercase); tests inject a sequence.
	IDs func() string
	// Node names this node's observation in the store (default: the host
	// name and a random suffix). Nodes sharing a store need distinct names;
	// the process started by a binary upgrade takes the name of the one it
	// replaces (see HandOver), so a node keeps one record across upgrades.
	Node string
	// Publish is how often the node's observation is written to the store
	// when member health did not change (default 5s); observations older
	// than StaleAfter times Publish are ignored.
	Publish time.Duration
	// Drainer drains pool members for maintenance windows that ask for
	// it (maintdrain.go); nil refuses such windows.
	Drainer Drainer
}

// Sealer encrypts small secrets at rest, bound to a label (certs.KEK).
type Sealer interface {
	Seal(label string, plaintext []byte) []byte
	Open(label string, sealed []byte) ([]byte, error)
}

// component is one configured component and its live state.
type component struct {
	ID, Name, Region, GroupID, Description string
	Pools                                  []string
	Position                               int
	componentState
	poolAgg // the last sample of its pools, over the error-rate window
}

// group is a region: a component group of the status API.
type group struct {
	ID, Name   string
	Position   int
	Components []*component
}

// outbox is the work a locked section of the portal leaves for after
// its lock is released (Portal.unlock), and what orders that work.
type outbox struct {
	// pendingSite is the snapshot a locked section took for unlock to
	// render; snapshots numbers them. Both are guarded by Portal.mu.
	pendingSite *siteBuilder
	snapshots   uint64
	// flushDue asks unlock to flush history and decisions to the store
	// (history.go flush), and is what a failure is logged as; guarded by
	// Portal.mu.
	flushDue string
	// flushMu orders flushes.
	flushMu sync.Mutex
	// renderMu orders the swap of renderings (site.go renderSite) and
	// guards renderedSeq and renderCount.
	renderMu    sync.Mutex
	renderedSeq uint64
	renderCount uint64
}

// Portal is the status portal: the model, its persistence and its pages.
type Portal struct {
	log       *slog.Logger
	title     string
	url       string // public base URL ending in "/", or ""
	pageID    string
	interval  time.Duration
	flushEvry time.Duration
	src       Source
	id        func() string
	now       func() time.Time
	st        store.Store
	tmpl      *templates
	hooks     *dispatcher
	guard     *webhook.Guard // webhook URL policy
	secrets   Sealer         // nil: webhook secrets in clear
	node      string
	publishEv time.Duration
	started   time.Time

	// handedOver is set once a binary upgrade has handed this node's name
	// to the process that replaces it: this one no longer publishes under
	// it, takes the successor's observation from the store like another
	// node's, and leaves the record in place when it closes.
	handedOver atomic.Bool

	// pubMu guards the last published observation.
	pubMu     sync.Mutex
	pubHealth string // members up per pool, as last published
	pubAt     time.Time

	// mu guards the model below and serialises writes.
	mu          sync.Mutex
	rules       // hysteresis and error-rate thresholds (decide.go)
	comps       []*component
	byID        map[string]*component
	groups      []*group // regions in order of first appearance; "" region is not a group
	leading     bool     // this node decides for the fleet (Lead runs, not paused)
	elected     bool     // Lead is running
	paused      bool     // Pause: do not lead until Resume
	nodes       map[string]*nodeView
	fleet       fleetState // the last decisions written or read
	incidents   map[string]*Incident
	maints      map[string]*MaintenanceWindow
	overrides   map[string]Override
	subs        map[string]Subscriber
	clearSecret map[string]bool  // subscribers whose secret the store holds in clear (older versions)
	revs        map[string]int64 // store key → ModRev we hold
	hist        history
	lastTick    time.Time
	lastFlush   time.Time
	lastRender  time.Time // when the site was last rendered
	updatedAt   time.Time
	outbox                     // what a locked section leaves for unlock (site.go)
	events      []pendingEvent // announced at the next snapshot of the site

	mail   *emailer       // nil without status.email (email.go)
	mailWG sync.WaitGroup // notifications being queued in the store

	site    atomic.Pointer[site]
	changed atomic.Pointer[chan struct{}] // closed and replaced at every render

	cancel context.CancelFunc
	done   chan struct{}
	// life ends when Close begins: store calls of the sampling loop give
	// up then instead of holding up a shutdown.
	life    context.Context
	drainer Drainer // Options.Drainer
	endLife context.CancelFunc
}

// New returns the portal for the configured components (every pool is a
// component when none are configured), reading health from src. Call
// Start to load the store and keep the page current, Lead to decide
// component states (on one node of a fleet at a time), and Close to stop.
func New(cfg config.Status, pools []config.Pool, src Source, opts Options) *Portal {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	life, endLife := context.WithCancel(context.Background())
	p := &Portal{
		life:      life,
		endLife:   endLife,
		drainer:   opts.Drainer,
		log:       log.With("component", "status"),
		interval:  opts.Interval,
		flushEvry: opts.HistoryFlush,
		src:       src,
		id:        opts.IDs,
		now:       func() time.Time { return now().UTC() },
		st:        opts.Store,
		tmpl:      parseTemplates(),
		byID:      map[string]*component{},
		incidents: map[string]*Incident{},
		maints:    map[string]*MaintenanceWindow{},
		overrides: map[string]Override{},
		subs:      map[string]Subscriber{},
		guard:     webhook.NewGuard("status.webhooks.allow_hosts"),
		secrets:   opts.Secrets,
		revs:      map[string]int64{},
		hist:      history{days: map[string]dayRecord{}, dirty: map[string]bool{}},
		nodes:     map[string]*nodeView{},
		node:      opts.Node,
		publishEv: opts.Publish,
	}
	if p.node == "" {
		p.node = defaultNode()
	}
	if p.publishEv <= 0 {
		p.publishEv = DefaultPublish
	}
	if p.interval <= 0 {
		p.interval = DefaultInterval
	}
	if p.flushEvry <= 0 {
		p.flushEvry = DefaultHistoryFlush
	}
	if p.id == nil {
		p.id = newID
	}
	if p.src == nil {
		p.src = func() []Pool { return nil }
	}
	p.clearSecret = map[string]bool{}
	if cfg.Email != nil {
		p.mail = newEmailer(p, *cfg.Email, cfg.URL)
	}
	p.hooks = newDispatcher(p.log, opts, p.guard, p.deliveryLogged)
	p.started = p.now()
	ch := make(chan struct{})
	p.changed.Store(&ch)
	p.lastTick = p.started
	p.lastFlush = p.started
	p.updatedAt = p.started
	p.mu.Lock()
	p.configureLocked(cfg, pools)
	p.renderLocked()
	p.unlock()
	return p
}

// configureLocked sets the page's settings and builds its component list
// and groups from cfg. Components that were there before (same region and
// name, hence the same id) keep their live state; their history is kept
// in any case, by id.
func (p *Portal) configureLocked(cfg config.Status, pools []config.Pool) {
	p.title = cfg.Title
	if p.title == "" {
		p.title = "Service status"
	}
	p.url = cfg.URL
	if p.url != "" && !strings.HasSuffix(p.url, "/") {
		p.url += "/"
	}
	p.pageID = stableID("page", cfg.Title+"\x00"+cfg.URL)
	p.hold = cfg.Hysteresis.D()
	if p.hold <= 0 {
		p.hold = DefaultHysteresis
	}
	p.errRate = cfg.ErrorRate.WithDefaults()
	p.guard.SetAllowHosts(cfg.Webhooks.AllowHosts)
	comps := cfg.Components
	if len(comps) == 0 {
		for _, pl := range pools {
			comps = append(comps, config.Component{Name: pl.Name, Pools: []string{pl.Name}})
		}
	}
	old := p.byID
	p.comps, p.groups, p.byID = nil, nil, make(map[string]*component, len(comps))
	groups := map[string]*group{}
	for _, c := range comps {
		comp := &component{
			ID: stableID("component", c.Region+"/"+c.Name), Name: c.Name, Region: c.Region,
			Description: c.Description, Pools: c.Pools,
			componentState: componentState{status: Operational, updatedAt: p.started, track: tracker{shown: Operational}},
		}
		if prev := old[comp.ID]; prev != nil {
			comp.componentState, comp.poolAgg = prev.componentState, prev.poolAgg
		} else if r, ok := p.fleet.Components[comp.ID]; ok {
			comp.track.shown = r.Health
		}
		if c.Region != "" {
			g := groups[c.Region]
			if g == nil {
				g = &group{ID: stableID("group", c.Region), Name: c.Region}
				groups[c.Region] = g
				p.groups = append(p.groups, g)
			}
			comp.GroupID = g.ID
			g.Components = append(g.Components, comp)
			comp.Position = len(g.Components)
		}
		p.comps = append(p.comps, comp)
		p.byID[comp.ID] = comp
	}
	pos := 0
	for _, g := range p.groups {
		pos++
		g.Position = pos
	}
	for _, c := range p.comps {
		if c.GroupID == "" {
			pos++
			c.Position = pos
		}
	}
}

// Reconfigure applies a reloaded status section: components added to the
// configuration appear, removed ones disappear, and those that remain keep
// their state and history. Settings (title, URL, hysteresis, error-rate
// thresholds) take effect at once.
func (p *Portal) Reconfigure(cfg config.Status, pools []config.Pool) {
	p.reconfigureMail(cfg)
	p.mu.Lock()
	defer p.unlock()
	now := p.now()
	if p.leading {
		p.accountLocked(now) // the time so far belongs to the old list
	}
	p.configureLocked(cfg, pools)
	if p.leading {
		p.evaluateLocked(now, false)
		p.flushDue = "writing status state"
	} else {
		p.reevaluateLocked(now)
	}
	p.updatedAt = now
	p.renderLocked()
	p.log.Info("status components reconfigured", "components", len(p.comps), "regions", len(p.groups))
}

// Start loads incidents, maintenance, overrides, subscribers and history
// from the store, renders the site, and keeps it current until Close:
// health is sampled every Interval and changes made by other nodes are
// followed by watching the store.
func (p *Portal) Start(ctx context.Context) error {
	var rev int64
	feed := &storeFeed{p: p}
	follow := store.FollowOptions{What: "status records", Logger: p.log}
	if p.st != nil {
		var err error
		if rev, err = store.Load(ctx, p.st, KeyPrefix, follow, feed); err != nil {
			return fmt.Errorf("status: loading from the store: %w", err)
		}
	}
	now := p.now()
	obs := p.observe(now)
	p.mu.Lock()
	p.ingestLocked(obs)
	p.decideLocked(now, true, nil)
	p.renderLocked()
	p.unlock()
	p.publish(obs)
	bg, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	p.done = make(chan struct{})
	go func() {
		defer close(p.done)
		var wg sync.WaitGroup
		wg.Go(func() { p.run(bg) })
		if p.st != nil {
			follow.Loaded, follow.FromRev = true, rev
			<-store.Follow(bg, p.st, KeyPrefix, follow, feed).Done()
		}
		wg.Wait()
	}()
	return nil
}

// Close stops sampling and watching, steps down (writing history to the
// store) if this node leads, withdraws its observation (unless it was
// handed over to a new process, see HandOver) and waits for webhook
// deliveries in flight to give up.
func (p *Portal) Close() error {
	p.endLife()
	if p.cancel != nil {
		p.cancel()
		<-p.done
	}
	err := p.stepDown()
	p.mailWG.Wait()
	p.hooks.close()
	// After a hand-over the record is the successor's: deleting it would
	// withdraw the new process's observation (and, while the embedded
	// store is read-only for the upgrade, fail).
	if p.st != nil && !p.handedOver.Load() && p.reachable() {
		ctx, cancel := context.WithTimeout(context.Background(), stepDownBudget)
		defer cancel()
		if _, derr := store.DeleteKey(ctx, p.st, keyNodes+p.node); derr != nil {
			err = errors.Join(err, derr)
		}
	}
	return err
}

// RerenderEvery bounds how stale the uptime figures of the site may be.
const RerenderEvery = time.Minute

func (p *Portal) run(ctx context.Context) { loop.Every(ctx, p.interval, p.Tick) }

// Tick samples this node's pools and publishes the observation. On the
// leader it then merges every node's fresh observation, applies
// hysteresis, overrides and maintenance windows, accounts history, and
// writes the decisions; on every node it re-renders the site if anything
// a reader sees changed. Run calls it every Interval; tests call it
// directly.
func (p *Portal) Tick() {
	now := p.now()
	obs := p.observe(now)
	own := !p.handedOver.Load() // after a hand-over the successor observes
	if own {
		p.publish(obs)
	}
	p.mu.Lock()
	defer p.unlock()
	if own {
		p.ingestLocked(obs)
	}
	if !p.leading {
		// Maintenance windows begin and end by the clock on every node.
		if p.reevaluateLocked(now) || now.Sub(p.lastRender) >= RerenderEvery {
			p.renderLocked()
		}
		return
	}
	p.accountLocked(now)
	p.sealSecretsLocked()
	advanced := p.advanceMaintenanceLocked(now)
	changed := p.evaluateLocked(now, false) || advanced
	// Re-render on a change, and at least once a minute so uptime figures
	// include the time spent in the current state.
	if changed || now.Sub(p.lastRender) >= RerenderEvery {
		p.renderLocked()
	}
	if now.Sub(p.lastFlush) >= p.flushEvry || changed {
		p.sweepNodesLocked(now)
		p.flushDue = "writing status history"
	}
}

// evaluateLocked merges the fleet's observations, recomputes every
// component's automatic and shown state and reports whether one changed.
// Changes are announced to webhook subscribers, and a major outage from
// health or errors opens a draft incident.
func (p *Portal) evaluateLocked(now time.Time, initial bool) bool {
	return p.decideLocked(now, initial, p.aggregateLocked(now))
}

// reevaluateLocked recomputes what the page shows after an override,
// incident or maintenance changed, without sampling health.
func (p *Portal) reevaluateLocked(now time.Time) bool {
	return p.decideLocked(now, false, nil)
}

// decideLocked runs the state machine (decide.go) for every component
// and carries out its decisions; agg is the fleet's fresh sample by pool,
// nil for none. Only the leader announces changes and opens drafts; a
// follower takes the time of a change from the leader's decisions when
// they agree. It reports whether a shown state changed.
func (p *Portal) decideLocked(now time.Time, initial bool, agg map[string]poolAgg) bool {
	r := p.rules
	changed := false
	for _, c := range p.comps {
		in := componentInput{id: c.ID, overrides: p.overrides, maints: p.maints, leading: p.leading, initial: initial}
		if agg != nil {
			var o poolAgg
			for _, name := range c.Pools {
				o.add(agg[name])
			}
			c.poolAgg, in.obs = o, &o
		}
		if rec, ok := p.fleet.Components[c.ID]; ok {
			in.leader = &rec
		}
		d := r.decide(c.componentState, in, now)
		c.componentState = d.next
		changed = changed || d.changed
		if !d.announce {
			continue
		}
		p.log.Info("component state changed", "component", c.Region+"/"+c.Name, "from", d.from, "to", c.status)
		p.hooks.componentUpdate(p, c, d.from, now)
		if d.openDraft {
			p.openDraftLocked(c, now)
		}
	}
	if changed {
		p.updatedAt = now
	}
	return changed
}

// openDraftLocked opens an unpublished incident for c unless an open
// incident already covers it.
func (p *Portal) openDraftLocked(c *component, now time.Time) {
	for _, in := range p.incidents {
		if in.Unresolved() && slices.Contains(in.Components, c.ID) {
			return
		}
	}
	name := c.Name
	if c.Region != "" {
		name = c.Region + " " + c.Name
	}
	body := fmt.Sprintf("No member of %s passes its health checks. We are investigating.", strings.Join(c.Pools, ", "))
	if stateOf(c.healthy, c.total) != Major {
		body = fmt.Sprintf("%.0f%% of the %d requests to %s in the last %s failed. We are investigating.",
			errorPercent(c.requests, c.failures), c.requests, strings.Join(c.Pools, ", "), p.errRate.Window.D())
	}
	in := &Incident{
		ID: p.id(), Name: name + ": major outage", Status: Investigating, Impact: ImpactMajor,
		Draft: true, Auto: true, Components: []string{c.ID}, CreatedAt: now, UpdatedAt: now,
		// The machine-written text names pools: for the operator only.
		// Publishing (incident update --publish -m …) adds the first
		// public update, in the operator's words.
		Updates: []Update{{ID: p.id(), Status: Investigating, CreatedAt: now, Body: body, Internal: true}},
	}
	if err := p.putLocked(p.life, keyIncidents+in.ID, in); err != nil {
		p.log.Warn("opening a draft incident", "component", c.Name, "err", err)
		return
	}
	p.incidents[in.ID] = in
	p.log.Warn("draft incident opened for a major outage; publish it with gatehouse incident update --publish", "incident", in.ID, "component", c.Region+"/"+c.Name)
}

// advanceMaintenanceLocked starts maintenance whose window has begun and
// completes maintenance whose window has ended.
func (p *Portal) advanceMaintenanceLocked(now time.Time) bool {
	changed := false
	for _, m := range p.maints {
		var next, body string
		switch {
		case m.Status == Scheduled && !now.Before(m.ScheduledFor) && now.Before(m.ScheduledUntil):
			next, body = InProgress, "Scheduled maintenance is currently in progress."
		case (m.Status == Scheduled || m.Status == InProgress) && !now.Before(m.ScheduledUntil):
			next, body = Completed, "The scheduled maintenance has been completed."
		default:
			continue
		}
		cp := *m
		extra, ok := p.maintenanceDrainLocked(&cp, next)
		if !ok {
			if cp.DrainError != m.DrainError {
				p.recordRefusalLocked(&cp)
			}
			continue
		}
		if extra != "" {
			body += " " + extra
		}
		cp.Updates = withUpdate(m.Updates, Update{ID: p.id(), Status: next, Body: body, CreatedAt: now})
		setMaintStatus(&cp, next, now)
		if err := p.casLocked(p.life, keyMaintenances+m.ID, &cp); err != nil {
			p.log.Warn("advancing maintenance", "maintenance", m.ID, "err", err)
			continue
		}
		p.maints[m.ID] = &cp
		p.events = append(p.events, pendingEvent{kind: "incident_update", id: m.ID})
		changed = true
	}
	return changed
}

func setMaintStatus(m *MaintenanceWindow, status string, now time.Time) {
	m.Status, m.UpdatedAt = status, now
	switch status {
	case InProgress:
		if m.StartedAt == nil {
			m.StartedAt = &now
		}
	case Completed:
		m.CompletedAt = &now
	}
}

// putLocked writes v under key unconditionally and records its revision.
func (p *Portal) putLocked(ctx context.Context, key string, v any) error {
	if p.st == nil {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	rev, err := store.PutKV(ctx, p.st, key, b)
	if err != nil {
		return err
	}
	p.revs[key] = rev
	return nil
}

// casLocked writes v under key if nobody else changed it since we read it.
func (p *Portal) casLocked(ctx context.Context, key string, v any) error {
	if p.st == nil {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	rev, err := p.st.Txn(ctx, []store.Cond{{Key: key, ModRev: p.revs[key]}}, []store.Op{store.Put(key, b)})
	if err != nil {
		if errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("%s changed on another node; retry: %w", key, err)
		}
		return err
	}
	p.revs[key] = rev
	return nil
}

func (p *Portal) deleteLocked(ctx context.Context, key string) error {
	if p.st == nil {
		return nil
	}
	rev, err := store.DeleteKey(ctx, p.st, key)
	if err != nil {
		return err
	}
	p.revs[key] = rev
	return nil
}

// storeFeed is the store.Handler that keeps the portal's copy of the
// store's records in step with changes by any node (see store.Follow).
type storeFeed struct {
	p      *Portal
	resets int
}

// Reset replaces the portal's copy of the store's records with a listing,
// prunes history older than HistoryKeepDays and, after the first listing
// (a relisting after compaction), renders what changed meanwhile.
func (f *storeFeed) Reset(ctx context.Context, l *store.Listing) error {
	p := f.p
	var kvs []store.KV
	for kv, err := range l.All() {
		if err != nil {
			return err
		}
		kvs = append(kvs, kv)
	}
	p.mu.Lock()
	defer p.unlock()
	cutoff := p.now().AddDate(0, 0, -HistoryKeepDays).Format(dayLayout)
	var stale []store.Op
	listed := make(map[string]bool, len(kvs))
	// The listing was read before the lock was taken: a record this node
	// wrote since (a revision after the listing's) is newer than what
	// the listing says of it, and the watch from the listing's revision
	// delivers it again.
	asOf := l.Rev()
	for _, kv := range kvs {
		listed[kv.Key] = true
		if strings.HasPrefix(kv.Key, keyHistory) && strings.TrimPrefix(kv.Key, keyHistory) < cutoff {
			stale = append(stale, store.Delete(kv.Key))
			continue
		}
		if p.revs[kv.Key] > asOf {
			continue
		}
		if err := p.applyLocked(kv); err != nil {
			p.log.Warn("skipping an unreadable status record", "key", kv.Key, "err", err)
		}
	}
	// Records deleted while the watch could not tell (compaction).
	for key, rev := range p.revs {
		if !listed[key] && rev <= asOf {
			p.removeLocked(key)
		}
	}
	if len(stale) > 0 {
		if _, err := p.st.Txn(ctx, nil, stale); err != nil {
			p.log.Warn("pruning old status history", "err", err)
		}
	}
	if f.resets++; f.resets > 1 {
		p.changedLocked(p.now())
	}
	return nil
}

// Apply applies watched changes that arrived together, rendering once.
func (f *storeFeed) Apply(resps []store.WatchResponse) {
	var events []store.Event
	for _, r := range resps {
		events = append(events, r.Events...)
	}
	f.p.mu.Lock()
	defer f.p.unlock()
	f.p.applyEventsLocked(events)
}

// applyLocked replaces the in-memory copy of one store record.
func (p *Portal) applyLocked(kv store.KV) error {
	key := kv.Key
	p.revs[key] = kv.ModRev
	switch {
	case strings.HasPrefix(key, keyIncidents):
		var in Incident
		if err := json.Unmarshal(kv.Value, &in); err != nil {
			return err
		}
		p.incidents[in.ID] = &in
	case strings.HasPrefix(key, keyMaintenances):
		var m MaintenanceWindow
		if err := json.Unmarshal(kv.Value, &m); err != nil {
			return err
		}
		p.maints[m.ID] = &m
	case strings.HasPrefix(key, keyOverrides):
		var o Override
		if err := json.Unmarshal(kv.Value, &o); err != nil {
			return err
		}
		p.overrides[o.Component] = o
	case strings.HasPrefix(key, keyWebhooks):
		s, clear, err := p.openSubscriber(key, kv.Value)
		if err != nil {
			return err
		}
		p.subs[s.ID] = s
		if clear {
			p.clearSecret[s.ID] = true
		} else {
			delete(p.clearSecret, s.ID)
		}
	case strings.HasPrefix(key, keyHistory):
		var d dayRecord
		if err := json.Unmarshal(kv.Value, &d); err != nil {
			return err
		}
		day := strings.TrimPrefix(key, keyHistory)
		if cur, ok := p.hist.days[day]; ok {
			d.merge(cur) // keep what this node accumulated and has not written
		}
		p.hist.days[day] = d
	case strings.HasPrefix(key, keyNodes):
		var o observation
		if err := json.Unmarshal(kv.Value, &o); err != nil {
			return err
		}
		if o.Node != p.node || p.handedOver.Load() {
			p.ingestLocked(o)
		}
	case key == keyState:
		var fs fleetState
		if err := json.Unmarshal(kv.Value, &fs); err != nil {
			return err
		}
		p.applyFleetLocked(fs)
	case strings.HasPrefix(key, keyDeliveries):
		var d Delivery
		if err := json.Unmarshal(kv.Value, &d); err != nil {
			return err
		}
		p.hooks.log.apply(key, d)
	}
	return nil
}

// removeLocked drops the in-memory copy of a deleted store record. The
// key's revision is forgotten too: a later event for it has a higher one,
// and keys that come and go (the delivery log, nodes' observations) would
// otherwise be remembered for ever.
func (p *Portal) removeLocked(key string) {
	delete(p.revs, key)
	id := key[strings.LastIndexByte(key, '/')+1:]
	switch {
	case strings.HasPrefix(key, keyIncidents):
		delete(p.incidents, id)
	case strings.HasPrefix(key, keyMaintenances):
		delete(p.maints, id)
	case strings.HasPrefix(key, keyOverrides):
		delete(p.overrides, id)
	case strings.HasPrefix(key, keyWebhooks):
		delete(p.subs, id)
		delete(p.clearSecret, id)
	case strings.HasPrefix(key, keyNodes):
		delete(p.nodes, id)
	case strings.HasPrefix(key, keyDeliveries):
		p.hooks.log.remove(key)
	}
}

// applyEventsLocked applies a batch of watched changes and re-renders if
// a reader would see a difference. The leader announces incidents and
// maintenance that other nodes changed.
func (p *Portal) applyEventsLocked(events []store.Event) {
	dirty := false
	for _, ev := range events {
		key := ev.KV.Key
		switch {
		case p.revs[key] >= ev.KV.ModRev:
			if ev.Type == store.EventDelete && p.revs[key] == ev.KV.ModRev {
				delete(p.revs, key) // our own delete: nothing left to track
			}
			continue // our own write, or one already applied
		case p.leading && (key == keyState || strings.HasPrefix(key, keyHistory)):
			continue // the leader's own decisions
		case strings.HasPrefix(key, keyNodes), strings.HasPrefix(key, keyDeliveries):
			// Observations count at the leader's next tick; the delivery
			// log is not on the page.
		default:
			dirty = true
		}
		if ev.Type == store.EventDelete {
			p.removeLocked(key)
			continue
		}
		if err := p.applyLocked(ev.KV); err != nil {
			p.log.Warn("skipping an unreadable status record", "key", key, "err", err)
			continue
		}
		if p.leading && (strings.HasPrefix(key, keyIncidents) || strings.HasPrefix(key, keyMaintenances)) {
			p.events = append(p.events, pendingEvent{kind: "incident_update", id: key[strings.LastIndexByte(key, '/')+1:]})
		}
	}
	if dirty {
		p.changedLocked(p.now())
	}
}

// ServeHTTP serves the public portal from the rendered site.
func (p *Portal) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p.serveSubscribe(w, r) {
		return
	}
	p.site.Load().serve(w, r)
}

// Revision counts renders of the site; it grows at every change.
func (p *Portal) Revision() uint64 { return p.site.Load().rev }

// Changed returns a channel closed at the next render.
func (p *Portal) Changed() <-chan struct{} { return *p.changed.Load() }
