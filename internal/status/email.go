package status

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"gatehouse/internal/config"
	"gatehouse/internal/mailer"
	"gatehouse/internal/store"
)

// Email subscriptions live under their own prefix, outside KeyPrefix: the
// portal does not load or watch them (a fleet may hold 100,000
// subscribers), the leader pages through them when it sends.
//
//	statusmail/key              the key that derives link tokens (sealed)
//	statusmail/subs/<sid>       a subscriber (sid: hash of the address)
//	statusmail/pending/<pid>    a subscription awaiting its confirmation
//	statusmail/queue/<t>-<pid>  a confirmation email to send
//	statusmail/events/<t>-<k>   a notification to send to every subscriber
//	                            concerned, with the cursor of its progress
//
// Link tokens are never stored: a token is the HMAC of its purpose and
// record id under the sealed key (and, for a subscriber, a per-subscriber
// nonce that a new subscription replaces), so a token is unguessable,
// single-purpose and checked in constant time.
const (
	MailKeyPrefix  = "statusmail/"
	keyMailKey     = MailKeyPrefix + "key"
	keyMailSubs    = MailKeyPrefix + "subs/"
	keyMailPending = MailKeyPrefix + "pending/"
	keyMailQueue   = MailKeyPrefix + "queue/"
	keyMailEvents  = MailKeyPrefix + "events/"
)

// Token purposes.
const (
	purposeConfirm = "confirm"
	purposeManage  = "manage"
)

// EmailSubscriber is a person subscribed by email.
type EmailSubscriber struct {
	ID    string `json:"id"`
	Email string `json:"email"`
	// Components, if not empty, limits notifications to incidents and
	// maintenance that affect one of these component ids (or name none).
	Components  []string  `json:"components,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	ConfirmedAt time.Time `json:"confirmed_at"`
	// Failures counts permanent refusals by the mail server; at
	// status.email.max_failures the subscription is suspended.
	Failures  int  `json:"failures,omitempty"`
	Suspended bool `json:"suspended,omitempty"`
	// Nonce enters the subscriber's link token; a new one voids old links.
	Nonce string `json:"nonce"`
}

// LogValue keeps the address out of logs.
func (s EmailSubscriber) LogValue() slog.Value { return slog.StringValue(s.ID) }

func (s EmailSubscriber) wants(comps []string) bool {
	return Subscriber{Components: s.Components}.wants(comps)
}

// pendingSub is a subscription awaiting confirmation.
type pendingSub struct {
	ID         string    `json:"id"`
	Email      string    `json:"email"`
	Components []string  `json:"components,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
}

// mailEvent is one notification and how far its sending got.
type mailEvent struct {
	Kind       string    `json:"kind"` // incident_update, maintenance_update, postmortem
	Subject    string    `json:"subject"`
	Heading    string    `json:"heading"` // status line
	Body       string    `json:"body"`    // Markdown
	Link       string    `json:"link"`    // path under the public URL
	Components []string  `json:"components,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
	// Cursor is the last subscriber id handled (sent, refused or not
	// concerned); sending continues after it. Done lists the subscribers
	// after the cursor already handed to the server (messages sent in
	// parallel finish out of order): they are not sent again.
	Cursor string   `json:"cursor,omitempty"`
	Done   []string `json:"done,omitempty"`
	Sent   int      `json:"sent"`
	Failed int      `json:"failed"`
}

// subID is the subscriber id of an address: the same on every node, and
// the address cannot be read back from it.
func subID(addr string) string {
	h := sha256.Sum256([]byte("gatehouse-status-subscriber\x00" + strings.ToLower(addr)))
	return hex.EncodeToString(h[:16])
}

func randomID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// emailer is the email side of the portal: configuration, the link key,
// the SMTP client and the subscribe rate limits.
type emailer struct {
	p      *Portal
	limits *subscribeLimits
	// c is the configuration in force; a reload replaces it whole.
	c atomic.Pointer[mailConf]

	// keyMu guards key.
	keyMu sync.Mutex
	key   []byte

	// wake is signalled when something was queued on this node.
	wake chan struct{}
}

// mailConf is status.email as loaded, with its SMTP clients. A sending
// pass works with one mailConf from start to end.
type mailConf struct {
	cfg     config.StatusEmail // defaults filled in
	pub     string             // public URL ending in "/"
	from    string             // bare sender address
	client  *mailer.Client     // clients[0]: confirmations
	clients []*mailer.Client   // one per status.email.smtp.connections
	setupEr error              // why sending cannot work (password or CA unreadable)
}

func (e *emailer) conf() *mailConf { return e.c.Load() }

func newEmailer(p *Portal, cfg config.StatusEmail, publicURL string) *emailer {
	c := newMailConf(cfg, publicURL)
	e := &emailer{p: p, wake: make(chan struct{}, 1),
		limits: newSubscribeLimits(c.cfg.PerIPPerHour, c.cfg.PerAddressPerHour)}
	e.c.Store(c)
	if c.setupEr != nil {
		p.log.Error("status email cannot send", "err", c.setupEr)
	}
	return e
}

// reconfigure applies a reloaded status.email: the next message goes
// through the new server, sender, rate and links; the sessions of the
// old configuration are closed by the sender when its pass ends.
func (e *emailer) reconfigure(cfg config.StatusEmail, publicURL string) {
	c := newMailConf(cfg, publicURL)
	e.c.Store(c)
	e.limits.set(c.cfg.PerIPPerHour, c.cfg.PerAddressPerHour)
	if c.setupEr != nil {
		e.p.log.Error("status email cannot send", "err", c.setupEr)
	}
	e.poke()
}

// reconfigureMail applies a reloaded status.email; adding or removing the
// whole section takes effect at the next start.
func (p *Portal) reconfigureMail(cfg config.Status) {
	switch {
	case p.mail != nil && cfg.Email != nil:
		p.mail.reconfigure(*cfg.Email, cfg.URL)
	case (p.mail == nil) != (cfg.Email == nil):
		p.log.Warn("reload: status.email added or removed; this takes effect at the next restart")
	}
}

func newMailConf(cfg config.StatusEmail, publicURL string) *mailConf {
	cfg = cfg.WithDefaults()
	pub := cfg.PublicURL
	if pub == "" {
		pub = publicURL
	}
	if pub != "" && !strings.HasSuffix(pub, "/") {
		pub += "/"
	}
	e := &mailConf{cfg: cfg, pub: pub}
	if a, err := parseFrom(cfg.From); err == nil {
		e.from = a
	}
	mc := mailer.Config{Host: cfg.SMTP.Host, Port: cfg.SMTP.Port, TLS: cfg.SMTP.TLS, Username: cfg.SMTP.Username}
	if cfg.SMTP.PasswordFile != "" {
		b, err := os.ReadFile(cfg.SMTP.PasswordFile)
		if err != nil {
			e.setupEr = fmt.Errorf("status.email.smtp.password_file: %w", err)
		}
		mc.Password = strings.TrimRight(string(b), "\r\n")
	}
	if cfg.SMTP.CAFile != "" {
		b, err := os.ReadFile(cfg.SMTP.CAFile)
		pool := x509.NewCertPool()
		if err != nil || !pool.AppendCertsFromPEM(b) {
			e.setupEr = errors.Join(e.setupEr, fmt.Errorf("status.email.smtp.ca_file: no PEM certificate read from %q (%v)", cfg.SMTP.CAFile, err))
		}
		mc.RootCAs = pool
	}
	if u, err := url.Parse(pub); err == nil {
		mc.HelloName = u.Hostname()
	}
	for range cfg.SMTP.Connections {
		e.clients = append(e.clients, mailer.New(mc))
	}
	e.client = e.clients[0]
	return e
}

// close ends the SMTP sessions of c.
func (c *mailConf) close() {
	for _, cl := range c.clients {
		cl.Close()
	}
}

func parseFrom(s string) (string, error) {
	at := strings.LastIndexByte(s, '<')
	if at >= 0 {
		s = strings.TrimSuffix(s[at+1:], ">")
	}
	return mailer.CheckAddress(strings.TrimSpace(s))
}

// linkKey returns the key that derives link tokens, creating it (sealed
// with the node's key-encryption key) on first use.
func (e *emailer) linkKey(ctx context.Context) ([]byte, error) {
	e.keyMu.Lock()
	defer e.keyMu.Unlock()
	if e.key != nil {
		return e.key, nil
	}
	st := e.p.st
	if st == nil {
		e.key = make([]byte, 32)
		rand.Read(e.key)
		return e.key, nil
	}
	for range 3 {
		kv, err := st.Get(ctx, keyMailKey)
		if err == nil {
			k, err := e.open(kv.Value)
			if err != nil {
				return nil, fmt.Errorf("status email: opening the link key: %w", err)
			}
			e.key = k
			return k, nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		k := make([]byte, 32)
		rand.Read(k)
		_, err = st.Txn(ctx, []store.Cond{store.Absent(keyMailKey)}, []store.Op{store.Put(keyMailKey, e.seal(k))})
		if err == nil {
			e.key = k
			return k, nil
		}
		if !errors.Is(err, store.ErrConflict) {
			return nil, err
		}
	}
	return nil, errors.New("status email: link key keeps changing")
}

func (e *emailer) seal(k []byte) []byte {
	if e.p.secrets == nil {
		return []byte("clear:" + base64.StdEncoding.EncodeToString(k))
	}
	return append([]byte("sealed:"), e.p.secrets.Seal(keyMailKey, k)...)
}

func (e *emailer) open(v []byte) ([]byte, error) {
	switch {
	case bytes.HasPrefix(v, []byte("clear:")):
		return base64.StdEncoding.DecodeString(string(v[len("clear:"):]))
	case bytes.HasPrefix(v, []byte("sealed:")):
		if e.p.secrets == nil {
			return nil, errors.New("the link key is sealed and this node has no key-encryption key")
		}
		return e.p.secrets.Open(keyMailKey, v[len("sealed:"):])
	}
	return nil, errors.New("unknown encoding")
}

// token derives the link token of purpose for id (and nonce).
func (e *emailer) token(ctx context.Context, purpose, id, nonce string) (string, error) {
	k, err := e.linkKey(ctx)
	if err != nil {
		return "", err
	}
	m := hmac.New(sha256.New, k)
	m.Write([]byte(purpose + "\x00" + id + "\x00" + nonce))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)), nil
}

// checkToken reports whether tok is the token of purpose for id (and nonce).
func (e *emailer) checkToken(ctx context.Context, purpose, id, nonce, tok string) bool {
	want, err := e.token(ctx, purpose, id, nonce)
	if err != nil || len(tok) != len(want) {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(tok), []byte(want)) == 1
}

// ErrBadLink is a confirmation, unsubscribe or manage link that is
// forged, already used or expired.
var ErrBadLink = errors.New("this link is not valid: it may have been used already or have expired")

// validRecordID reports whether s looks like a record id (hex), so that a
// hostile one never reaches the store.
func validRecordID(s string) bool {
	if len(s) != 32 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// Subscribe records a subscription request and queues its confirmation
// email. It never reveals whether addr is already subscribed. Components
// are ids, "Region/Name" or unique names.
func (e *emailer) subscribe(ctx context.Context, addr string, comps []string) error {
	a, err := mailer.CheckAddress(addr)
	if err != nil {
		return inputErr("email", "%v", err)
	}
	ids, err := e.resolve(comps)
	if err != nil {
		return err
	}
	ps := pendingSub{ID: randomID(), Email: a, Components: ids, CreatedAt: e.p.now()}
	b, _ := json.Marshal(ps)
	qk := fmt.Sprintf("%s%020d-%s", keyMailQueue, ps.CreatedAt.UnixNano(), ps.ID)
	if e.p.st == nil {
		return errors.New("status email needs a store")
	}
	if _, err := e.p.st.Txn(ctx, nil, []store.Op{store.Put(keyMailPending+ps.ID, b), store.Put(qk, []byte(ps.ID))}); err != nil {
		return err
	}
	e.poke()
	return nil
}

func (e *emailer) poke() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// resolve turns component references into ids; any unknown one is refused.
func (e *emailer) resolve(refs []string) ([]string, error) {
	if len(refs) > 200 {
		return nil, inputErr("component", "at most 200 components")
	}
	e.p.mu.Lock()
	defer e.p.mu.Unlock()
	if len(refs) == 0 {
		return nil, nil
	}
	ids, err := e.p.resolveComponentsLocked("component", refs)
	if err != nil {
		return nil, err
	}
	if len(ids) == len(e.p.comps) {
		return nil, nil // every component: follow the whole page, new components included
	}
	return ids, nil
}

// confirm turns the pending subscription pid into a confirmed subscriber.
func (e *emailer) confirm(ctx context.Context, pid, tok string) (EmailSubscriber, error) {
	if !validRecordID(pid) || !e.checkToken(ctx, purposeConfirm, pid, "", tok) {
		return EmailSubscriber{}, ErrBadLink
	}
	kv, err := e.p.st.Get(ctx, keyMailPending+pid)
	if errors.Is(err, store.ErrNotFound) {
		return EmailSubscriber{}, ErrBadLink
	}
	if err != nil {
		return EmailSubscriber{}, err
	}
	var ps pendingSub
	if err := json.Unmarshal(kv.Value, &ps); err != nil {
		return EmailSubscriber{}, err
	}
	if e.p.now().Sub(ps.CreatedAt) > e.conf().cfg.ConfirmTTL.D() {
		return EmailSubscriber{}, ErrBadLink
	}
	// The person confirmed: an earlier unsubscription is lifted.
	s, err := e.put(ctx, ps.Email, ps.Components, []store.Cond{{Key: keyMailPending + pid, ModRev: kv.ModRev}},
		store.Delete(keyMailPending+pid), store.Delete(keyMailUnsub+subID(ps.Email)))
	if errors.Is(err, store.ErrConflict) {
		return EmailSubscriber{}, ErrBadLink // confirmed twice at once
	}
	return s, err
}

// put creates or replaces the confirmed subscriber of addr (a new nonce
// voids the links of an earlier subscription), with extra conditions and
// operations in the same transaction.
func (e *emailer) put(ctx context.Context, addr string, comps []string, conds []store.Cond, extra ...store.Op) (EmailSubscriber, error) {
	now := e.p.now()
	s := EmailSubscriber{ID: subID(addr), Email: addr, Components: comps, CreatedAt: now, ConfirmedAt: now, Nonce: randomID()[:16]}
	if kv, err := e.p.st.Get(ctx, keyMailSubs+s.ID); err == nil {
		var old EmailSubscriber
		if json.Unmarshal(kv.Value, &old) == nil {
			s.CreatedAt = old.CreatedAt
		}
	}
	b, _ := json.Marshal(s)
	_, err := e.p.st.Txn(ctx, conds, append([]store.Op{store.Put(keyMailSubs+s.ID, b)}, extra...))
	return s, err
}

// subscriber returns the subscriber sid if tok is its manage token.
func (e *emailer) subscriber(ctx context.Context, sid, tok string) (EmailSubscriber, int64, error) {
	if !validRecordID(sid) {
		return EmailSubscriber{}, 0, ErrBadLink
	}
	kv, err := e.p.st.Get(ctx, keyMailSubs+sid)
	if errors.Is(err, store.ErrNotFound) {
		return EmailSubscriber{}, 0, ErrBadLink
	}
	if err != nil {
		return EmailSubscriber{}, 0, err
	}
	var s EmailSubscriber
	if err := json.Unmarshal(kv.Value, &s); err != nil {
		return EmailSubscriber{}, 0, err
	}
	if !e.checkToken(ctx, purposeManage, sid, s.Nonce, tok) {
		return EmailSubscriber{}, 0, ErrBadLink
	}
	return s, kv.ModRev, nil
}

// unsubscribe deletes the subscriber sid if tok is its token, leaving a
// tombstone.
func (e *emailer) unsubscribe(ctx context.Context, sid, tok string) error {
	_, rev, err := e.subscriber(ctx, sid, tok)
	if err != nil {
		return err
	}
	_, err = e.p.st.Txn(ctx, []store.Cond{{Key: keyMailSubs + sid, ModRev: rev}},
		[]store.Op{store.Delete(keyMailSubs + sid), tombstoneOp(sid, e.p.now())})
	return err
}

// setComponents changes what the subscriber sid follows.
func (e *emailer) setComponents(ctx context.Context, sid, tok string, refs []string) (EmailSubscriber, error) {
	s, rev, err := e.subscriber(ctx, sid, tok)
	if err != nil {
		return EmailSubscriber{}, err
	}
	ids, err := e.resolve(refs)
	if err != nil {
		return EmailSubscriber{}, err
	}
	s.Components, s.Suspended, s.Failures = ids, false, 0
	b, _ := json.Marshal(s)
	_, err = e.p.st.Txn(ctx, []store.Cond{{Key: keyMailSubs + sid, ModRev: rev}}, []store.Op{store.Put(keyMailSubs+sid, b)})
	return s, err
}

// links returns the manage and unsubscribe URLs of s.
func (e *emailer) links(ctx context.Context, s EmailSubscriber) (manage, unsub string, err error) {
	tok, err := e.token(ctx, purposeManage, s.ID, s.Nonce)
	if err != nil {
		return "", "", err
	}
	q := "?s=" + s.ID + "&t=" + tok
	pub := e.conf().pub
	return pub + "subscribe/manage" + q, pub + "subscribe/unsubscribe" + q, nil
}

// --- operators

// EmailSubscriberRequest adds a subscriber confirmed by an operator.
type EmailSubscriberRequest struct {
	Email      string   `json:"email"`
	Components []string `json:"components,omitempty"`
	// Resubscribe adds an address that unsubscribed (the person agreed
	// again); without it such an address is refused.
	Resubscribe bool `json:"resubscribe,omitempty"`
}

// ErrEmailDisabled is returned by the email calls when status.email is
// not configured.
var ErrEmailDisabled = &InputError{Field: "status.email", Msg: "email subscriptions are not configured"}

// AddEmailSubscriber adds (or replaces) a confirmed subscriber.
func (p *Portal) AddEmailSubscriber(ctx context.Context, req EmailSubscriberRequest) (EmailSubscriber, error) {
	if p.mail == nil {
		return EmailSubscriber{}, ErrEmailDisabled
	}
	a, err := mailer.CheckAddress(req.Email)
	if err != nil {
		return EmailSubscriber{}, inputErr("email", "%v", err)
	}
	ids, err := p.mail.resolve(req.Components)
	if err != nil {
		return EmailSubscriber{}, err
	}
	if err := p.mail.checkTombstone(ctx, "email", a, req.Resubscribe); err != nil {
		return EmailSubscriber{}, err
	}
	return p.mail.put(ctx, a, ids, nil, store.Delete(keyMailUnsub+subID(a)))
}

// RemoveEmailSubscriber deletes the subscriber of addr.
func (p *Portal) RemoveEmailSubscriber(ctx context.Context, addr string) error {
	if p.mail == nil {
		return ErrEmailDisabled
	}
	id := subID(strings.TrimSpace(addr))
	if _, err := p.st.Get(ctx, keyMailSubs+id); errors.Is(err, store.ErrNotFound) {
		return &NotFoundError{Kind: "email subscriber", ID: addr}
	} else if err != nil {
		return err
	}
	_, err := store.DeleteKey(ctx, p.st, keyMailSubs+id)
	return err
}

// EmailSubscribers calls f for every subscriber (or only the one of addr),
// paging through the store.
func (p *Portal) EmailSubscribers(ctx context.Context, addr string, f func(EmailSubscriber) error) error {
	if p.mail == nil {
		return ErrEmailDisabled
	}
	if addr != "" {
		kv, err := p.st.Get(ctx, keyMailSubs+subID(strings.TrimSpace(addr)))
		if errors.Is(err, store.ErrNotFound) {
			return &NotFoundError{Kind: "email subscriber", ID: addr}
		}
		if err != nil {
			return err
		}
		var s EmailSubscriber
		if err := json.Unmarshal(kv.Value, &s); err != nil {
			return err
		}
		return f(s)
	}
	return pageSubscribers(ctx, p.st, "", func(s EmailSubscriber) error { return f(s) })
}

// pageSubscribers calls f for each subscriber after startAfter (a sid),
// in id order, a page at a time.
func pageSubscribers(ctx context.Context, st store.Store, startAfter string, f func(EmailSubscriber) error) error {
	after := ""
	if startAfter != "" {
		after = keyMailSubs + startAfter
	}
	for {
		kvs, _, err := st.List(ctx, keyMailSubs, after, subscriberPage)
		if err != nil {
			return err
		}
		for _, kv := range kvs {
			var s EmailSubscriber
			if err := json.Unmarshal(kv.Value, &s); err != nil {
				continue
			}
			if err := f(s); err != nil {
				return err
			}
		}
		if len(kvs) < subscriberPage {
			return nil
		}
		after = kvs[len(kvs)-1].Key
	}
}

// subscriberPage is how many subscribers are read at a time.
const subscriberPage = 256

// --- announcing

// mailEventLocked writes the notification for the incident or maintenance
// id, once: its key is derived from the record's state, so the same change
// seen by two leaders is queued once.
func (p *Portal) mailEventLocked(id string) {
	e := p.mail
	if e == nil || p.st == nil {
		return
	}
	var ev mailEvent
	var key string
	if in, ok := p.incidents[id]; ok {
		if in.Draft {
			return
		}
		pub := in.public()
		if len(pub.Updates) == 0 {
			return
		}
		last := pub.Updates[len(pub.Updates)-1]
		ev = mailEvent{Kind: "incident_update", Subject: fmt.Sprintf("[%s] %s", StatusText(in.Status), in.Name),
			Heading: StatusText(last.Status), Body: last.Body, Link: "incidents/" + id + ".html", Components: in.Components}
		key = fmt.Sprintf("%020d-i-%s-%d", last.CreatedAt.UnixNano(), id, len(pub.Updates))
		if in.Postmortem != "" && in.PostmortemAt != nil && !in.PostmortemAt.Before(last.CreatedAt) {
			ev = mailEvent{Kind: "postmortem", Subject: "Post-incident report: " + in.Name, Heading: "Post-incident report",
				Body: in.Postmortem, Link: "incidents/" + id + "-report.html", Components: in.Components}
			key = fmt.Sprintf("%020d-r-%s", in.PostmortemAt.UnixNano(), id)
		}
	} else if mw, ok := p.maints[id]; ok {
		last := mw.Latest()
		ev = mailEvent{Kind: "maintenance_update", Subject: fmt.Sprintf("[%s] %s", StatusText(mw.Status), mw.Name),
			Heading: fmt.Sprintf("%s · %s to %s", StatusText(mw.Status), mw.ScheduledFor.UTC().Format("Jan 2, 2006 15:04 UTC"),
				mw.ScheduledUntil.UTC().Format("Jan 2, 2006 15:04 UTC")),
			Body: last.Body, Link: "incidents/" + id + ".html", Components: mw.Components}
		key = fmt.Sprintf("%020d-m-%s-%s-%d", mw.UpdatedAt.UnixNano(), id, mw.Status, len(mw.Updates))
	} else {
		return
	}
	ev.Components = sortedCopy(ev.Components)
	ev.Subject = p.title + ": " + ev.Subject
	ev.CreatedAt = p.now()
	b, _ := json.Marshal(ev)
	k := keyMailEvents + key
	// Written outside the lock: the sender picks it up from the store.
	p.mailWG.Go(func() {
		ctx, cancel := context.WithTimeout(p.life, 10*time.Second)
		defer cancel()
		if _, err := p.st.Txn(ctx, []store.Cond{store.Absent(k)}, []store.Op{store.Put(k, b)}); err != nil && !errors.Is(err, store.ErrConflict) {
			p.log.Warn("queueing an email notification", "key", k, "err", err)
			return
		}
		e.poke()
	})
}

// sortedCopy returns ids sorted, for stable output.
func sortedCopy(ids []string) []string {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}

// AddEmailSubscribers adds confirmed subscribers in batches (an import);
// every address is checked first, and nothing is written if one is
// refused (the error names its index).
func (p *Portal) AddEmailSubscribers(ctx context.Context, reqs []EmailSubscriberRequest) error {
	if p.mail == nil {
		return ErrEmailDisabled
	}
	ops := make([]store.Op, 0, len(reqs))
	now := p.now()
	for i, req := range reqs {
		a, err := mailer.CheckAddress(req.Email)
		if err != nil {
			return inputErr(fmt.Sprintf("subscribers[%d].email", i), "%v", err)
		}
		ids, err := p.mail.resolve(req.Components)
		if err != nil {
			return fmt.Errorf("subscribers[%d]: %w", i, err)
		}
		if err := p.mail.checkTombstone(ctx, fmt.Sprintf("subscribers[%d].email", i), a, req.Resubscribe); err != nil {
			return err
		}
		s := EmailSubscriber{ID: subID(a), Email: a, Components: ids, CreatedAt: now, ConfirmedAt: now, Nonce: randomID()[:16]}
		b, _ := json.Marshal(s)
		ops = append(ops, store.Put(keyMailSubs+s.ID, b))
		if req.Resubscribe {
			ops = append(ops, store.Delete(keyMailUnsub+s.ID))
		}
	}
	for len(ops) > 0 {
		n := min(len(ops), 100) // etcd allows 128 operations per transaction
		if _, err := p.st.Txn(ctx, nil, ops[:n]); err != nil {
			return err
		}
		ops = ops[n:]
	}
	return nil
}
