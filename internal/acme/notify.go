package acme

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"gatehouse/internal/config"
	"gatehouse/internal/hostnames"
	"gatehouse/internal/webhook"
)

// StateEvent is the event name of a hostname state change webhook.
const StateEvent = "hostname.state"

// StatePayload is the body of a hostname state change webhook: the
// hostname as it is after the change, the states before and after, and
// the node that made it. It never carries a key or a secret.
type StatePayload struct {
	Event       string          `json:"event"`
	At          time.Time       `json:"at"`
	Node        string          `json:"node,omitempty"`
	Name        string          `json:"name"`
	Tenant      string          `json:"tenant,omitempty"`
	Pool        string          `json:"pool"`
	Source      string          `json:"source"`
	From        hostnames.State `json:"from,omitempty"`
	To          hostnames.State `json:"to"`
	Reason      string          `json:"reason,omitempty"`
	Attempts    int             `json:"attempts,omitempty"`
	NextAttempt *time.Time      `json:"next_attempt,omitempty"`
	Serial      string          `json:"serial,omitempty"`
	NotAfter    *time.Time      `json:"not_after,omitempty"`
}

// Notifier sends hostname state changes to the operator's webhook
// (acme.webhook). Each change is sent by the node that made it, once, with
// the portal's retries (a delivery in flight when the node stops is lost:
// the state itself is in the store and `gatehouse hostname list`).
type Notifier struct {
	target atomic.Pointer[webhook.Target]
	guard  *webhook.Guard
	sender *webhook.Sender
	node   string
	sent   atomic.Uint64
}

// NotifierOptions tune a Notifier (tests shorten the backoff).
type NotifierOptions struct {
	Logger  *slog.Logger
	Node    string
	Backoff time.Duration // 0: the webhook default
	Tries   int           // 0: the webhook default
}

// NewNotifier returns a Notifier for w (reading its secret file); Close
// stops it.
func NewNotifier(w *config.ACMEWebhook, opts NotifierOptions) (*Notifier, error) {
	n := &Notifier{guard: webhook.NewGuard("acme.webhook.allow_hosts"), node: opts.Node}
	if err := n.Configure(w); err != nil {
		return nil, err
	}
	n.sender = webhook.NewSender(webhook.SenderOptions{Logger: opts.Logger, Guard: n.guard, Backoff: opts.Backoff, Tries: opts.Tries, UserAgent: "gatehouse-hostnames"})
	return n, nil
}

// Configure applies acme.webhook (at start and on reload): the URL is
// checked against the webhook policy, the secret read from its file.
// On error nothing changes.
func (n *Notifier) Configure(w *config.ACMEWebhook) error {
	b, err := os.ReadFile(w.SecretFile)
	if err != nil {
		return fmt.Errorf("acme.webhook.secret_file: %w", err)
	}
	secret := strings.TrimSpace(string(b))
	if len(secret) < 16 {
		return fmt.Errorf("acme.webhook.secret_file: %s holds %d characters; at least 16 are needed", w.SecretFile, len(secret))
	}
	u, err := url.Parse(w.URL)
	if err != nil {
		return fmt.Errorf("acme.webhook.url: %w", err)
	}
	n.guard.SetAllowHosts(w.AllowHosts)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.guard.CheckURL(ctx, u); err != nil {
		return fmt.Errorf("acme.webhook.url: %w", err)
	}
	n.target.Store(&webhook.Target{Name: "acme.webhook", URL: w.URL, Secret: secret})
	return nil
}

// SetListeners names this node's listeners, to which no delivery goes.
func (n *Notifier) SetListeners(addrs map[string]string) { n.guard.SetListeners(addrs) }

// OnTransition sends one state change (hostnames.Options.OnTransition).
func (n *Notifier) OnTransition(t hostnames.Transition) {
	h := t.Hostname
	p := StatePayload{Event: StateEvent, At: t.At, Node: n.node, Name: h.Name, Tenant: h.Tenant, Pool: h.Pool, Source: h.Source,
		From: t.From, To: t.To, Reason: h.Reason, Attempts: h.Attempts, Serial: h.Serial}
	if !h.NextAttempt.IsZero() && t.To != hostnames.Removed {
		at := h.NextAttempt
		p.NextAttempt = &at
	}
	if !h.NotAfter.IsZero() {
		na := h.NotAfter
		p.NotAfter = &na
	}
	body, err := json.Marshal(p)
	if err != nil {
		return
	}
	if n.sender.Send(*n.target.Load(), StateEvent, body) {
		n.sent.Add(1)
	}
}

// Sent returns how many state changes were handed to the sender.
func (n *Notifier) Sent() uint64 { return n.sent.Load() }

// Close stops retrying and waits for deliveries in flight.
func (n *Notifier) Close() { n.sender.Close() }
