package status

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"slices"
	"strings"
	"sync"
	"time"

	"gatehouse/internal/mailer"
	"gatehouse/internal/store"
)

// Sending, on the leader. Each pass sends the queued confirmations, then
// the notifications in the order they were queued. A notification is sent
// over status.email.smtp.connections sessions in parallel; its progress
// (a cursor and the subscribers handled past it) is written with a
// compare-and-swap that covers every message accepted since the previous
// write, and a session waits for that write before its next message, so a
// leader that dies mid-batch is followed by one that resumes without
// re-sending what was accepted: at most the messages in flight at the
// crash (one per session) are sent twice, none is lost. A 4xx answer or an unreachable server stops the pass,
// which is retried with a growing delay; a 5xx answer counts against the
// address and the batch moves on.

// Retry delays of the sender after a temporary failure.
const (
	mailRetryFirst = 2 * time.Second
	mailRetryMax   = 5 * time.Minute
	mailSweepEvery = time.Minute
)

// errLostLead stops a pass when another node wrote the event meanwhile.
var errLostLead = errors.New("status email: the notification was changed by another node")

// runMail sends while ctx lasts (the node's leadership).
func (e *emailer) runMail(ctx context.Context) {
	var wait, backoff time.Duration
	lastSweep := time.Time{}
	used := e.conf()
	defer func() { used.close() }()
	for {
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			case <-e.wake:
				t.Stop()
			}
		}
		if ctx.Err() != nil {
			return
		}
		if !e.p.Leading() { // paused for an upgrade
			wait = time.Second
			continue
		}
		if now := e.p.now(); now.Sub(lastSweep) >= mailSweepEvery {
			e.sweepPending(ctx, now)
			e.sweepRates(ctx, now)
			lastSweep = now
		}
		if c := e.conf(); c != used { // reloaded
			used.close()
			used = c
		}
		err := e.pass(ctx, used)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			backoff = min(max(backoff*2, mailRetryFirst), mailRetryMax)
			wait = backoff
			e.p.log.Warn("status email: sending paused", "err", err, "retry_in", wait)
		default:
			backoff = 0
			wait = mailSweepEvery // until woken by a new item
		}
	}
}

// pass sends everything queued; it returns on the first temporary error.
func (e *emailer) pass(ctx context.Context, c *mailConf) error {
	if c.setupEr != nil {
		return c.setupEr
	}
	st := e.p.st
	for {
		kvs, _, err := st.List(ctx, keyMailQueue, "", 64)
		if err != nil {
			return err
		}
		for _, kv := range kvs {
			if err := e.sendConfirmation(ctx, c, kv); err != nil {
				return err
			}
		}
		if len(kvs) < 64 {
			break
		}
	}
	for {
		kvs, _, err := st.List(ctx, keyMailEvents, "", 1)
		if err != nil || len(kvs) == 0 {
			return err
		}
		if err := e.sendEvent(ctx, c, kvs[0]); err != nil {
			return err
		}
	}
}

// pace waits for the sending rate.
func (e *emailer) pace(ctx context.Context, c *mailConf, last *time.Time) error {
	gap := time.Duration(float64(time.Second) / c.cfg.RatePerSecond)
	if d := gap - time.Since(*last); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	*last = time.Now()
	return nil
}

func (e *emailer) sendConfirmation(ctx context.Context, c *mailConf, q store.KV) error {
	st := e.p.st
	pid := string(q.Value)
	kv, err := st.Get(ctx, keyMailPending+pid)
	if errors.Is(err, store.ErrNotFound) {
		_, err = store.DeleteKey(ctx, st, q.Key) // confirmed or expired meanwhile
		return err
	}
	if err != nil {
		return err
	}
	var ps pendingSub
	if err := json.Unmarshal(kv.Value, &ps); err != nil {
		_, err = store.DeleteKey(ctx, st, q.Key)
		return err
	}
	tok, err := e.token(ctx, purposeConfirm, ps.ID, "")
	if err != nil {
		return err
	}
	link := c.pub + "subscribe/confirm?id=" + ps.ID + "&t=" + tok
	title := e.p.pageTitle()
	text := fmt.Sprintf("Someone, probably you, asked to receive email about %s.\n\nTo confirm, open this link within %s:\n%s\n\nIf it was not you, ignore this email: nothing will be sent to you.\n",
		title, c.cfg.ConfirmTTL.D(), link)
	var html bytes.Buffer
	confirmMailHTML.Execute(&html, map[string]string{"Title": title, "Link": link, "TTL": c.cfg.ConfirmTTL.D().String()})
	msg := mailer.Message{From: c.cfg.From, To: ps.Email, Subject: "Confirm your subscription to " + title,
		Text: text, HTML: html.String(), Date: e.p.now()}
	err = e.deliver(ctx, c, c.client, msg, "email:"+subID(ps.Email), "subscription_confirmation")
	if err != nil && !mailer.IsPermanent(err) {
		return err
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_, err = st.Txn(wctx, []store.Cond{{Key: q.Key, ModRev: q.ModRev}}, []store.Op{store.Delete(q.Key)})
	if errors.Is(err, store.ErrConflict) {
		return nil
	}
	return err
}

// deliver builds and sends msg and records the attempt in the delivery log
// (failures only for notifications: a batch is logged once, at its end).
func (e *emailer) deliver(ctx context.Context, c *mailConf, cl *mailer.Client, msg mailer.Message, sub, event string) error {
	b, err := msg.Bytes()
	if err != nil {
		return &mailer.PermanentError{Code: 554, Msg: err.Error()}
	}
	from := c.from
	err = cl.Send(ctx, from, msg.To, b)
	if err != nil || event == "subscription_confirmation" {
		d := Delivery{ID: newID(), Subscriber: sub, Event: event, Attempt: 1, OK: err == nil, Final: err == nil || mailer.IsPermanent(err), At: e.p.now(), Channel: "email"}
		var pe *mailer.PermanentError
		if errors.As(err, &pe) {
			d.StatusCode = pe.Code
		}
		if err != nil {
			d.Error = err.Error()
		}
		e.p.hooks.record(d)
	}
	return err
}

// sendWindow bounds how far the sending may run ahead of the cursor (the
// subscribers held in memory while one message is slow).
const sendWindow = 1024

// sendResult is one subscriber handled in a notification's batch.
type sendResult struct {
	seq     int64
	sid     string
	sent    bool  // handed to the server, accepted or refused (done)
	refused bool  // a permanent refusal
	err     error // temporary: not done, to be sent again
}

// sendEvent sends the notification kv to every subscriber concerned, over
// the parallel SMTP sessions. The subscribers are read in id order and
// numbered; the committer advances the cursor over the handled prefix and
// records the ones handled after it in Done, writing everything accepted
// since its last write in one compare-and-swap (a group commit). A session
// takes its next message only once the write covering its last one is
// done, so a leader that dies re-sends at most the messages in flight
// (one per session) and loses none.
func (e *emailer) sendEvent(ctx context.Context, c *mailConf, kv store.KV) error {
	st := e.p.st
	var ev mailEvent
	if err := json.Unmarshal(kv.Value, &ev); err != nil {
		_, err = store.DeleteKey(ctx, st, kv.Key)
		return err
	}
	rev := kv.ModRev
	var html bytes.Buffer
	e.p.tmpl.md.Convert([]byte(ev.Body), &html) // raw HTML omitted, as on the pages
	body := template.HTML(html.String())
	link := c.pub + ev.Link
	title := e.p.pageTitle()
	subject, heading, text, kind, comps := ev.Subject, ev.Heading, ev.Body, ev.Kind, ev.Components
	save := func() error {
		b, _ := json.Marshal(ev)
		// Written even as leadership ends: the server has the messages.
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		r, err := st.Txn(wctx, []store.Cond{{Key: kv.Key, ModRev: rev}}, []store.Op{store.Put(kv.Key, b)})
		if errors.Is(err, store.ErrConflict) {
			return errLostLead
		}
		rev = r
		return err
	}
	send := func(cl *mailer.Client, s EmailSubscriber) error {
		manage, unsub, err := e.links(ctx, s)
		if err != nil {
			return err
		}
		plain := fmt.Sprintf("%s\n%s\n\n%s\n\nDetails: %s\n\n--\nYou receive this because you subscribed to %s.\nChoose components: %s\nUnsubscribe: %s\n",
			subject, heading, text, link, title, manage, unsub)
		var h bytes.Buffer
		notifyMailHTML.Execute(&h, map[string]any{"Subject": subject, "Heading": heading, "Body": body, "Link": link,
			"Title": title, "Manage": manage, "Unsub": unsub})
		msg := mailer.Message{From: c.cfg.From, To: s.Email, Subject: subject, Text: plain, HTML: h.String(),
			Date: e.p.now(), Unsubscribe: unsub, ListID: c.listID()}
		return e.deliver(ctx, c, cl, msg, "email:"+s.ID, kind)
	}

	cctx, stop := context.WithCancel(ctx)
	defer stop()
	type job struct {
		seq int64
		s   EmailSubscriber
	}
	jobs := make(chan job)
	results := make(chan sendResult, sendWindow)
	slots := make(chan struct{}, len(c.clients)) // sends not yet covered by a write
	window := make(chan struct{}, sendWindow)    // subscribers not yet passed by the cursor
	handled := make(map[string]bool, len(ev.Done))
	for _, sid := range ev.Done {
		handled[sid] = true
	}
	var wg sync.WaitGroup
	for _, cl := range c.clients {
		wg.Go(func() {
			for j := range jobs {
				r := sendResult{seq: j.seq, sid: j.s.ID}
				if cctx.Err() != nil {
					r.err = cctx.Err()
				} else if err := send(cl, j.s); err == nil {
					r.sent = true
				} else if mailer.IsPermanent(err) {
					r.sent, r.refused = true, true
					e.countFailure(ctx, j.s.ID)
				} else {
					r.err = err
				}
				results <- r
			}
		})
	}
	var listErr error
	wg.Go(func() {
		defer close(jobs)
		var seq int64
		var last time.Time
		listErr = pageSubscribers(cctx, st, ev.Cursor, func(s EmailSubscriber) error {
			select {
			case window <- struct{}{}:
			case <-cctx.Done():
				return cctx.Err()
			}
			r := sendResult{seq: seq, sid: s.ID}
			seq++
			if handled[s.ID] || s.Suspended || s.ConfirmedAt.IsZero() || !s.wants(comps) {
				results <- r
				return nil
			}
			select {
			case slots <- struct{}{}:
			case <-cctx.Done():
				return cctx.Err()
			}
			if err := e.pace(cctx, c, &last); err != nil {
				<-slots
				return err
			}
			jobs <- job{seq: r.seq, s: s}
			return nil
		})
	})
	go func() {
		wg.Wait()
		close(results)
	}()

	// The committer.
	done := make(map[string]bool, len(ev.Done)) // handled after the cursor
	for _, sid := range ev.Done {
		done[sid] = true
	}
	pending := map[int64]sendResult{}
	var next int64
	var stopErr error
	uncommitted, passed := 0, 0 // sends not yet written; subscribers passed since the last write
	commit := func() {
		ev.Done = ev.Done[:0]
		for sid := range done {
			if sid > ev.Cursor {
				ev.Done = append(ev.Done, sid)
			} else {
				delete(done, sid)
			}
		}
		slices.Sort(ev.Done)
		if stopErr == nil || !errors.Is(stopErr, errLostLead) {
			if err := save(); err != nil && stopErr == nil {
				stopErr = err
				stop()
			}
		}
		for range uncommitted {
			<-slots
		}
		uncommitted, passed = 0, 0
	}
	for closed := false; !closed; {
		r, ok := <-results
		if !ok {
			break
		}
		batch := []sendResult{r}
	drain:
		for {
			select {
			case r, ok := <-results:
				if !ok {
					closed = true
					break drain
				}
				batch = append(batch, r)
			default:
				break drain
			}
		}
		for _, r := range batch {
			if r.err != nil { // not done: the cursor stays before it
				<-slots
				if stopErr == nil {
					stopErr = r.err
					stop()
				}
				continue
			}
			if r.sent {
				uncommitted++
				done[r.sid] = true
				if r.refused {
					ev.Failed++
				} else {
					ev.Sent++
				}
			}
			pending[r.seq] = r
		}
		for {
			r, ok := pending[next]
			if !ok {
				break
			}
			delete(pending, next)
			next++
			ev.Cursor = r.sid
			delete(done, r.sid)
			<-window
			passed++
		}
		if uncommitted > 0 || passed >= subscriberPage {
			commit()
		}
	}
	if uncommitted > 0 || passed > 0 {
		commit()
	}
	if stopErr != nil {
		return stopErr
	}
	if listErr != nil {
		return listErr
	}
	e.p.hooks.record(Delivery{ID: newID(), Subscriber: "email", Event: ev.Kind, Attempt: 1, OK: ev.Failed == 0, Final: true,
		At: e.p.now(), Channel: "email", Recipients: ev.Sent, Error: failedText(ev.Failed)})
	_, err := st.Txn(ctx, []store.Cond{{Key: kv.Key, ModRev: rev}}, []store.Op{store.Delete(kv.Key)})
	if errors.Is(err, store.ErrConflict) {
		return errLostLead
	}
	return err
}

func failedText(n int) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("%d address(es) refused by the mail server", n)
}

// countFailure counts a permanent refusal (or a later bounce) for sid and
// suspends the subscription at max_failures.
func (e *emailer) countFailure(ctx context.Context, sid string) (EmailSubscriber, error) {
	for range 5 {
		kv, err := e.p.st.Get(ctx, keyMailSubs+sid)
		if err != nil {
			return EmailSubscriber{}, err
		}
		var s EmailSubscriber
		if err := json.Unmarshal(kv.Value, &s); err != nil {
			return EmailSubscriber{}, err
		}
		s.Failures++
		if s.Failures >= e.conf().cfg.MaxFailures && !s.Suspended {
			s.Suspended = true
			e.p.log.Warn("status email: subscription suspended after repeated refusals", "subscriber", s, "failures", s.Failures)
		}
		b, _ := json.Marshal(s)
		_, err = e.p.st.Txn(ctx, []store.Cond{{Key: kv.Key, ModRev: kv.ModRev}}, []store.Op{store.Put(kv.Key, b)})
		if !errors.Is(err, store.ErrConflict) {
			return s, err
		}
	}
	return EmailSubscriber{}, errors.New("status email: the subscriber keeps changing")
}

// sweepPending deletes subscriptions left unconfirmed past confirm_ttl.
func (e *emailer) sweepPending(ctx context.Context, now time.Time) {
	after := ""
	for {
		kvs, _, err := e.p.st.List(ctx, keyMailPending, after, 256)
		if err != nil {
			return
		}
		var ops []store.Op
		for _, kv := range kvs {
			var ps pendingSub
			if json.Unmarshal(kv.Value, &ps) != nil || now.Sub(ps.CreatedAt) > e.conf().cfg.ConfirmTTL.D() {
				ops = append(ops, store.Delete(kv.Key))
			}
		}
		for len(ops) > 0 {
			n := min(len(ops), 100)
			if _, err := e.p.st.Txn(ctx, nil, ops[:n]); err != nil {
				return
			}
			ops = ops[n:]
		}
		if len(kvs) < 256 {
			return
		}
		after = kvs[len(kvs)-1].Key
	}
}

func (c *mailConf) listID() string {
	host := "status.invalid"
	if i := strings.Index(c.pub, "://"); i >= 0 {
		host = strings.SplitN(strings.SplitN(c.pub[i+3:], "/", 2)[0], ":", 2)[0]
	}
	return host
}

func (p *Portal) pageTitle() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.title
}

var confirmMailHTML = template.Must(template.New("confirm").Parse(`<!doctype html><html><body>
<p>Someone, probably you, asked to receive email about {{.Title}}.</p>
<p><a href="{{.Link}}">Confirm the subscription</a> (the link works for {{.TTL}}).</p>
<p>If it was not you, ignore this email: nothing will be sent to you.</p>
</body></html>`))

var notifyMailHTML = template.Must(template.New("notify").Parse(`<!doctype html><html><body>
<h1>{{.Subject}}</h1>
<p><strong>{{.Heading}}</strong></p>
{{.Body}}
<p><a href="{{.Link}}">Details</a></p>
<hr>
<p>You receive this because you subscribed to {{.Title}}. <a href="{{.Manage}}">Choose components</a> · <a href="{{.Unsub}}">Unsubscribe</a></p>
</body></html>`))
