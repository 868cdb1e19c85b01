package status

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Webhook secrets at rest. With a Sealer (the node's key-encryption key)
// the store holds a subscriber's secret sealed, bound to its key
// (status/webhooks/<id>), under sealed_secret; the secret field stays
// empty. Records written in clear by older versions are read as they are
// and sealed by the leading node at its next tick (retried at every tick
// until the store takes the write, e.g. after a binary upgrade made it
// writable again).

// storedSubscriber is a subscriber as the store holds it.
type storedSubscriber struct {
	Subscriber
	SealedSecret []byte `json:"sealed_secret,omitempty"`
}

// storedSubscriber returns s as written to the store: its secret sealed
// when the portal has a Sealer.
func (p *Portal) storedSubscriber(s Subscriber) storedSubscriber {
	if p.secrets == nil || s.Secret == "" {
		return storedSubscriber{Subscriber: s}
	}
	out := storedSubscriber{Subscriber: s, SealedSecret: p.secrets.Seal(keyWebhooks+s.ID, []byte(s.Secret))}
	out.Secret = ""
	return out
}

// openSubscriber reads a stored subscriber and opens its secret; clear
// reports a secret the store holds in clear.
func (p *Portal) openSubscriber(key string, value []byte) (s Subscriber, clear bool, err error) {
	var st storedSubscriber
	if err := json.Unmarshal(value, &st); err != nil {
		return Subscriber{}, false, err
	}
	s = st.Subscriber
	if key != keyWebhooks+s.ID {
		return Subscriber{}, false, fmt.Errorf("subscriber %q stored under %s", s.ID, key)
	}
	if len(st.SealedSecret) > 0 {
		if p.secrets == nil {
			return Subscriber{}, false, errors.New("the webhook secret is sealed and this portal has no key-encryption key")
		}
		pt, err := p.secrets.Open(key, st.SealedSecret)
		if err != nil {
			return Subscriber{}, false, fmt.Errorf("webhook secret: %w", err)
		}
		s.Secret = string(pt)
		return s, false, nil
	}
	return s, s.Secret != "" && p.secrets != nil, nil
}

// sealSecretsLocked seals the secrets that older versions stored in
// clear. The leader calls it at every tick; a write that fails is retried
// at the next.
func (p *Portal) sealSecretsLocked() {
	if p.st == nil || p.secrets == nil || len(p.clearSecret) == 0 {
		return
	}
	sealed := 0
	var lastErr error
	for id := range p.clearSecret {
		s, ok := p.subs[id]
		if !ok {
			delete(p.clearSecret, id)
			continue
		}
		if err := p.casLocked(p.life, keyWebhooks+id, p.storedSubscriber(s)); err != nil {
			lastErr = err
			continue
		}
		delete(p.clearSecret, id)
		sealed++
	}
	if sealed > 0 {
		p.log.Info("sealed webhook secrets that an older version stored in clear", "subscribers", sealed)
	}
	if lastErr != nil {
		p.log.Debug("sealing webhook secrets stored in clear; retrying at the next tick", "left", len(p.clearSecret), "err", lastErr)
	}
}

// SetListeners tells the portal the addresses this node listens on, by
// listener name ("https", "admin", …): webhooks to them are refused.
func (p *Portal) SetListeners(addrs map[string]string) { p.guard.SetListeners(addrs) }
