package status

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"gatehouse/internal/store"
	"gatehouse/internal/webhook"
)

// Webhook headers.
const (
	// SignatureHeader carries "sha256=" and the hex HMAC-SHA256 of the body
	// keyed with the subscriber's secret.
	SignatureHeader = webhook.SignatureHeader
	EventHeader     = webhook.EventHeader
	DeliveryHeader  = webhook.DeliveryHeader
)

// deliveryLogSize is the number of delivery attempts kept.
const deliveryLogSize = 500

// Subscriber is a webhook endpoint that receives component and incident
// updates.
type Subscriber struct {
	ID  string `json:"id"`
	URL string `json:"url"`
	// Secret keys the HMAC signature; the management API shows it only in
	// the answer that creates the subscriber.
	Secret string `json:"secret,omitempty"`
	// Components, if not empty, limits the updates to those of these
	// component ids and to incidents and maintenance that affect one of
	// them (or name no component).
	Components []string  `json:"components,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
}

// wants reports whether s subscribed to an update about comps.
func (s Subscriber) wants(comps []string) bool {
	if len(s.Components) == 0 || len(comps) == 0 {
		return true
	}
	for _, c := range comps {
		if slices.Contains(s.Components, c) {
			return true
		}
	}
	return false
}

// LogValue keeps the secret out of logs.
func (s Subscriber) LogValue() slog.Value {
	return slog.GroupValue(slog.String("id", s.ID), slog.String("url", s.URL))
}

// Delivery is one attempt to deliver an event, as kept in the delivery log.
type Delivery struct {
	ID         string    `json:"id"`
	Subscriber string    `json:"subscriber"`
	Event      string    `json:"event"`
	Attempt    int       `json:"attempt"`
	StatusCode int       `json:"status_code,omitempty"`
	Error      string    `json:"error,omitempty"`
	OK         bool      `json:"ok"`
	Final      bool      `json:"final"` // no further attempt follows
	At         time.Time `json:"at"`
	// Channel is "email" for email deliveries (empty: webhook); Subscriber
	// is then "email:<subscriber id>", or "email" for a whole batch whose
	// Recipients counts the messages accepted.
	Channel    string `json:"channel,omitempty"`
	Recipients int    `json:"recipients,omitempty"`
}

// Sign returns the signature header value of body under secret.
func Sign(secret string, body []byte) string { return webhook.Sign(secret, body) }

// pendingEvent is a change to announce once the site is rendered.
type pendingEvent struct {
	kind     string // "component_update" or "incident_update"
	id       string // component or incident id
	old, new string
	at       time.Time
}

// dispatcher delivers webhook events in the background through a
// webhook.Sender (enqueueing never blocks, and a failing subscriber only
// costs its own goroutine) and keeps every attempt in the delivery log.
type dispatcher struct {
	sender *webhook.Sender
	seq    atomic.Uint64 // orders attempts recorded at the same instant
	log    deliveryLog
	// persist, if not nil, writes an attempt to the store with the keys
	// that fell off the log.
	persist func(key string, d Delivery, dropped []string)
}

func newDispatcher(log *slog.Logger, opts Options, guard *webhook.Guard, persist func(string, Delivery, []string)) *dispatcher {
	d := &dispatcher{persist: persist}
	d.sender = webhook.NewSender(webhook.SenderOptions{
		Logger: log, Guard: guard, Timeout: 10 * time.Second,
		Tries: cmp.Or(max(opts.WebhookTries, 0), DefaultWebhookTries), Backoff: cmp.Or(max(opts.WebhookBackoff, 0), DefaultWebhookBackoff),
		UserAgent: "gatehouse-status", Now: opts.Now, NewID: newID,
		OnAttempt: func(a webhook.Attempt) {
			d.record(Delivery{ID: a.ID, Subscriber: a.Target.Name, Event: a.Event, Attempt: a.Attempt, StatusCode: a.StatusCode,
				Error: a.Error, OK: a.OK, Final: a.Final, At: a.At})
		},
	})
	return d
}

func (d *dispatcher) close() { d.sender.Close() }

// record adds an attempt to the log and persists it.
func (d *dispatcher) record(del Delivery) {
	key := deliveryKey(del, d.seq.Add(1))
	dropped := d.log.apply(key, del)
	if d.persist != nil {
		d.persist(key, del, dropped)
	}
}

// deliveryLog is the bounded log of delivery attempts, oldest first. It
// mirrors status/deliveries/ in the store, whose keys sort by time, so
// that it survives restarts and reads the same on every node.
type deliveryLog struct {
	// mu guards entries (sorted by key).
	mu      sync.Mutex
	entries []loggedDelivery
}

type loggedDelivery struct {
	key string
	d   Delivery
}

// deliveryKey is the store key of an attempt: its time first, then the
// order in which this node recorded it.
func deliveryKey(d Delivery, seq uint64) string {
	return fmt.Sprintf("%s%020d-%010d-%s-%02d", keyDeliveries, d.At.UnixNano(), seq, d.ID, d.Attempt)
}

// apply inserts (or replaces) the attempt under key and returns the keys
// of the oldest attempts beyond deliveryLogSize, which it dropped.
func (l *deliveryLog) apply(key string, d Delivery) (dropped []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	i, found := slices.BinarySearchFunc(l.entries, key, func(e loggedDelivery, k string) int { return strings.Compare(e.key, k) })
	if found {
		l.entries[i].d = d
		return nil
	}
	l.entries = slices.Insert(l.entries, i, loggedDelivery{key: key, d: d})
	if n := len(l.entries) - deliveryLogSize; n > 0 {
		for _, e := range l.entries[:n] {
			dropped = append(dropped, e.key)
		}
		l.entries = slices.Delete(l.entries, 0, n)
	}
	return dropped
}

func (l *deliveryLog) remove(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.entries = slices.DeleteFunc(l.entries, func(e loggedDelivery) bool { return e.key == key })
}

// list returns the attempts, oldest first, of subscriber sub ("" for all).
func (l *deliveryLog) list(sub string) []Delivery {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Delivery, 0, len(l.entries))
	for _, e := range l.entries {
		if sub == "" || e.d.Subscriber == sub {
			out = append(out, e.d)
		}
	}
	return out
}

// deliveryLogged writes an attempt to the store and deletes the attempts
// that fell off the log, so the log is bounded there too.
func (p *Portal) deliveryLogged(key string, d Delivery, dropped []string) {
	if p.st == nil {
		return
	}
	b, err := json.Marshal(d)
	if err != nil {
		p.log.Error("encoding a webhook delivery", "err", err)
		return
	}
	if !p.reachable() {
		// Not worth a request timeout per delivery (it would hold up a
		// shutdown); the in-memory log still has it.
		p.log.Warn("store unreachable: webhook delivery kept in this node's log only", "key", key)
		return
	}
	ops := []store.Op{store.Put(key, b)}
	for _, k := range dropped {
		ops = append(ops, store.Delete(k))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := p.st.Txn(ctx, nil, ops); err != nil {
		p.log.Warn("writing the webhook delivery log", "err", err)
	}
}

// send delivers body to every subscriber, each in its own goroutine.
func (d *dispatcher) send(subs []Subscriber, event string, body []byte) {
	for _, s := range subs {
		d.sender.Send(webhook.Target{Name: s.ID, URL: s.URL, Secret: s.Secret}, event, body)
	}
}

// Webhook payloads, in the shapes of the widely used status API's webhooks.
type (
	webhookMeta struct {
		Unsubscribe   *string `json:"unsubscribe"`
		Documentation string  `json:"documentation"`
		GeneratedAt   APITime `json:"generated_at"`
	}
	webhookPage struct {
		ID                string `json:"id"`
		StatusIndicator   string `json:"status_indicator"`
		StatusDescription string `json:"status_description"`
	}
	// ComponentEvent is the body of a component_update webhook.
	ComponentEvent struct {
		Meta            webhookMeta     `json:"meta"`
		Page            webhookPage     `json:"page"`
		ComponentUpdate ComponentUpdate `json:"component_update"`
		Component       APIComponent    `json:"component"`
	}
	// ComponentUpdate is a component's change of state.
	ComponentUpdate struct {
		ID            string  `json:"id"`
		CreatedAt     APITime `json:"created_at"`
		OldStatus     string  `json:"old_status"`
		NewStatus     string  `json:"new_status"`
		ComponentType string  `json:"component_type"`
		ComponentID   string  `json:"component_id"`
	}
	// IncidentEvent is the body of an incident_update webhook.
	IncidentEvent struct {
		Meta     webhookMeta `json:"meta"`
		Page     webhookPage `json:"page"`
		Incident APIIncident `json:"incident"`
	}
)

// componentUpdate queues the announcement of a component's change.
func (d *dispatcher) componentUpdate(p *Portal, c *component, old string, at time.Time) {
	p.events = append(p.events, pendingEvent{kind: "component_update", id: c.ID, old: old, new: c.status, at: at})
}

// flushEventsLocked sends the queued events with the freshly rendered
// page status. Only the leader delivers; followers drop their events.
func (p *Portal) flushEventsLocked(m *apiModel) {
	events := p.events
	p.events = nil
	if p.leading && p.mail != nil {
		for _, ev := range events {
			if ev.kind == "incident_update" {
				p.mailEventLocked(ev.id)
			}
		}
	}
	if !p.leading || len(p.subs) == 0 || len(events) == 0 {
		return
	}
	all := make([]Subscriber, 0, len(p.subs))
	for _, s := range p.subs {
		all = append(all, s)
	}
	meta := webhookMeta{Documentation: p.url + "api/v2/summary.json", GeneratedAt: apiTime(p.now())}
	page := webhookPage{ID: p.pageID, StatusIndicator: m.status.Indicator, StatusDescription: m.status.Description}
	for _, ev := range events {
		var body any
		var comps []string
		switch ev.kind {
		case "component_update":
			comp, ok := m.compByID[ev.id]
			if !ok {
				continue
			}
			comps = []string{ev.id}
			body = ComponentEvent{Meta: meta, Page: page, Component: comp, ComponentUpdate: ComponentUpdate{
				ID: p.id(), CreatedAt: apiTime(ev.at), OldStatus: ev.old, NewStatus: ev.new, ComponentType: "Component", ComponentID: ev.id}}
		case "incident_update":
			if in, ok := p.incidents[ev.id]; ok && !in.Draft {
				comps = in.Components
				body = IncidentEvent{Meta: meta, Page: page, Incident: p.apiIncidentLocked(in.public(), m)}
			} else if mw, ok := p.maints[ev.id]; ok {
				comps = mw.Components
				body = IncidentEvent{Meta: meta, Page: page, Incident: p.apiMaintenanceLocked(mw, m)}
			} else {
				continue
			}
		}
		subs := slices.DeleteFunc(slices.Clone(all), func(s Subscriber) bool { return !s.wants(comps) })
		if len(subs) == 0 {
			continue
		}
		b, err := json.Marshal(body)
		if err != nil {
			p.log.Error("encoding a webhook event", "err", err)
			continue
		}
		p.hooks.send(subs, ev.kind, b)
	}
}
