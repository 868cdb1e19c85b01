package status

import (
	"context"
	"encoding/json"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"gatehouse/internal/store"
)

// observation is one node's view of its pools, published under
// status/nodes/<node>.
type observation struct {
	Node  string            `json:"node"`
	At    time.Time         `json:"at"`
	Pools []poolObservation `json:"pools"`
}

// poolObservation is one pool as a node sees it: members up, and the
// cumulative counters of its proxy.
type poolObservation struct {
	Name     string `json:"name"`
	Healthy  int    `json:"healthy"`
	Total    int    `json:"total"`
	Requests uint64 `json:"requests"`
	Failures uint64 `json:"failures"`
}

// nodeView is what the portal knows of one node: its latest observation
// and, per pool, the counter samples of the error-rate window.
type nodeView struct {
	latest  observation
	samples map[string][]counterSample
}

type counterSample struct {
	at                 time.Time
	requests, failures uint64
}

// poolAgg is a pool merged over the fleet's fresh observations.
// It is also the sample of a component (its pools summed) that the
// state machine decides on (decide.go).
type poolAgg struct {
	healthy, total     int
	requests, failures uint64 // in the window
}

// fleetState is the leader's decisions, under status/state: every
// component's automatic and shown state, and how far the history in the
// store is accounted.
type fleetState struct {
	Leader     string                     `json:"leader"`
	At         time.Time                  `json:"at"`
	Components map[string]componentRecord `json:"components"`
}

type componentRecord struct {
	Status    string    `json:"status"` // shown
	Health    string    `json:"health"` // automatic, after hysteresis
	UpdatedAt time.Time `json:"updated_at"`
	Healthy   int       `json:"healthy"`
	Total     int       `json:"total"`
	Requests  uint64    `json:"requests"`
	Failures  uint64    `json:"failures"`
}

// defaultNode names this node: its host name and a random suffix, so a
// restarted process is a new observer.
func defaultNode() string {
	host, _ := os.Hostname()
	if host == "" {
		host = "node"
	}
	return strings.ReplaceAll(host, "/", "-") + "-" + newID()[:6]
}

// observe samples this node's pools.
func (p *Portal) observe(now time.Time) observation {
	pools := p.src()
	o := observation{Node: p.node, At: now, Pools: make([]poolObservation, len(pools))}
	for i, pl := range pools {
		po := poolObservation{Name: pl.Name, Total: len(pl.Members), Requests: pl.Requests, Failures: pl.Failures}
		for _, m := range pl.Members {
			if m.Up {
				po.Healthy++
			}
		}
		o.Pools[i] = po
	}
	return o
}

// healthKey summarises the member health of o, to publish at once when it
// changes.
func healthKey(o observation) string {
	var b strings.Builder
	for _, pl := range o.Pools {
		b.WriteString(pl.Name)
		b.WriteByte('=')
		b.WriteString(strconv.Itoa(pl.Healthy))
		b.WriteByte('/')
		b.WriteString(strconv.Itoa(pl.Total))
		b.WriteByte(';')
	}
	return b.String()
}

// publish writes this node's observation to the store when member health
// changed or Publish has passed since the last one.
func (p *Portal) publish(o observation) {
	if p.st == nil {
		return
	}
	h := healthKey(o)
	p.pubMu.Lock()
	defer p.pubMu.Unlock()
	if h == p.pubHealth && !p.pubAt.IsZero() && !o.At.Before(p.pubAt) && o.At.Sub(p.pubAt) < p.publishEv {
		return
	}
	b, err := json.Marshal(o)
	if err != nil {
		p.log.Error("encoding this node's observation", "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(p.life, 5*time.Second)
	defer cancel()
	if _, err := store.PutKV(ctx, p.st, keyNodes+p.node, b); err != nil {
		if !p.pubAt.IsZero() {
			p.log.Warn("publishing this node's pool observation", "err", err)
		}
		p.pubAt = time.Time{}
		return
	}
	p.pubHealth, p.pubAt = h, o.At
}

// NodeRecordExpiry is the age from which the leader deletes another
// node's observation from the store: a node that stopped without
// withdrawing it (killed, or upgraded by a version before the hand-over of
// its record). A live node writes its own every Publish interval.
const NodeRecordExpiry = 10 * time.Minute

// sweepNodesLocked deletes the records of nodes silent for
// NodeRecordExpiry, each only if it is still the version this node read
// (a node that published again keeps its record).
func (p *Portal) sweepNodesLocked(now time.Time) {
	if p.st == nil {
		return
	}
	for name, nv := range p.nodes {
		key := keyNodes + name
		rev, stored := p.revs[key]
		if name == p.node || !stored || now.Sub(nv.latest.At) < NodeRecordExpiry {
			continue
		}
		ctx, cancel := context.WithTimeout(p.life, 5*time.Second)
		_, err := p.st.Txn(ctx, []store.Cond{{Key: key, ModRev: rev}}, []store.Op{store.Delete(key)})
		cancel()
		if err != nil {
			p.log.Debug("removing a silent node's observation", "node", name, "err", err)
			continue
		}
		delete(p.nodes, name)
		delete(p.revs, key)
		p.log.Info("removed the observation of a node silent since its last publish", "node", name, "last", nv.latest.At)
	}
}

// staleAfter is the age from which an observation is ignored.
func (p *Portal) staleAfter() time.Duration { return StaleAfter * p.publishEv }

// ingestLocked records an observation (this node's or another's) and
// keeps, per pool, the samples the error-rate window needs: those inside
// it and the newest one before it, as the baseline.
func (p *Portal) ingestLocked(o observation) {
	nv := p.nodes[o.Node]
	if nv == nil {
		nv = &nodeView{samples: map[string][]counterSample{}}
		p.nodes[o.Node] = nv
	}
	if o.At.Before(nv.latest.At) {
		return // an older observation arrived late
	}
	nv.latest = o
	from := o.At.Add(-p.errRate.Window.D())
	seen := make(map[string]bool, len(o.Pools))
	for _, pl := range o.Pools {
		seen[pl.Name] = true
		ss := append(nv.samples[pl.Name], counterSample{at: o.At, requests: pl.Requests, failures: pl.Failures})
		i := 0
		for i+1 < len(ss) && !ss[i+1].at.After(from) {
			i++
		}
		nv.samples[pl.Name] = slices.Delete(ss, 0, i)
	}
	for name := range nv.samples {
		if !seen[name] {
			delete(nv.samples, name)
		}
	}
}

// aggregateLocked merges the fresh observations of every node: members
// up and total are summed, and so are the requests and failures each node
// counted over the window.
func (p *Portal) aggregateLocked(now time.Time) map[string]poolAgg {
	agg := map[string]poolAgg{}
	from := now.Add(-p.errRate.Window.D())
	for _, nv := range p.nodes {
		if now.Sub(nv.latest.At) > p.staleAfter() {
			continue
		}
		for _, pl := range nv.latest.Pools {
			a := agg[pl.Name]
			a.healthy += pl.Healthy
			a.total += pl.Total
			if ss := nv.samples[pl.Name]; len(ss) >= 2 {
				base, last := ss[0], ss[len(ss)-1]
				for _, s := range ss[1 : len(ss)-1] {
					if !s.at.After(from) {
						base = s
					}
				}
				if last.requests >= base.requests && last.failures >= base.failures {
					a.requests += last.requests - base.requests
					a.failures += last.failures - base.failures
				} else { // the node's counters restarted
					a.requests += last.requests
					a.failures += last.failures
				}
			}
			agg[pl.Name] = a
		}
	}
	return agg
}

// errorPercent is failures over requests, in percent.
func errorPercent(requests, failures uint64) float64 {
	if requests == 0 {
		return 0
	}
	return 100 * float64(failures) / float64(requests)
}

// fleetStateLocked is the leader's decisions as written to the store.
func (p *Portal) fleetStateLocked() fleetState {
	fs := fleetState{Leader: p.node, At: p.lastTick, Components: make(map[string]componentRecord, len(p.comps))}
	for _, c := range p.comps {
		fs.Components[c.ID] = componentRecord{Status: c.status, Health: c.track.shown, UpdatedAt: c.updatedAt,
			Healthy: c.healthy, Total: c.total, Requests: c.requests, Failures: c.failures}
	}
	return fs
}

// applyFleetLocked takes the leader's decisions: a follower shows them.
func (p *Portal) applyFleetLocked(fs fleetState) {
	p.fleet = fs
	if p.leading {
		return
	}
	for _, c := range p.comps {
		if r, ok := fs.Components[c.ID]; ok {
			c.track = tracker{shown: r.Health}
			c.healthy, c.total, c.requests, c.failures = r.Healthy, r.Total, r.Requests, r.Failures
		}
	}
	if !fs.At.IsZero() {
		p.lastTick = fs.At // the store's history is accounted up to here
	}
}

// Lead makes this node decide for the fleet until ctx is done: it merges
// every node's observations into component states, writes them and the
// history, opens draft incidents, advances maintenance and delivers
// webhooks. Run it under the fleet-wide election so that one node leads
// at a time; a single node runs it for as long as it serves. Lead
// continues from the decisions the previous leader left in the store and
// steps down (writing its history) when ctx is done.
func (p *Portal) Lead(ctx context.Context) {
	p.mu.Lock()
	if p.elected {
		p.unlock()
		<-ctx.Done()
		return
	}
	p.elected = true
	if !p.paused {
		p.startLeadingLocked()
	}
	p.unlock()
	if p.mail != nil {
		// Email goes out from the leader only, from the queue in the store.
		var wg sync.WaitGroup
		wg.Go(func() { p.mail.runMail(ctx) })
		defer wg.Wait()
	}
	<-ctx.Done()
	p.mu.Lock()
	p.elected = false
	p.unlock()
	if err := p.stepDown(); err != nil {
		p.log.Warn("writing status history while stepping down", "err", err)
	}
}

// startLeadingLocked makes this node decide for the fleet from now on.
func (p *Portal) startLeadingLocked() {
	p.leading = true
	now := p.now()
	p.lastTick, p.lastFlush = now, now
	if at := p.fleet.At; !at.IsZero() && !at.After(now) && now.Sub(at) <= 2*p.flushEvry {
		p.lastTick = at // continue the history where the last leader left it
	}
	for _, c := range p.comps {
		c.track.pending = "" // hysteresis starts over with this node's own samples
	}
	p.log.Info("leading the status portal for the fleet", "node", p.node, "previous", p.fleet.Leader)
}

// Pause writes the history this node accounted as leader and stops
// deciding for the fleet until Resume, without giving up its election. A
// binary upgrade pauses the old process before its store turns read-only,
// so that nothing it accounted is lost and the new process decides alone.
func (p *Portal) Pause() error {
	p.mu.Lock()
	p.paused = true
	p.unlock()
	return p.stepDown()
}

// HandOver gives this node's name, and with it its observation record
// under status/nodes/<node>, to the process a binary upgrade starts (which
// is given Node()): from now on this process no longer publishes, reads
// the successor's observation like another node's, and leaves the record
// in place at Close. Resume takes the name back after a failed upgrade.
// Without it, the old process could not withdraw its record while the
// embedded store is read-only for the upgrade, and every upgrade left a
// stale record behind.
func (p *Portal) HandOver() {
	if !p.handedOver.Swap(true) {
		p.log.Info("status observations handed over to the new process", "node", p.node)
	}
}

// Resume undoes Pause and HandOver (a binary upgrade that failed): the
// node publishes its observation again, and leads again if it is still
// elected.
func (p *Portal) Resume() {
	if p.handedOver.Swap(false) {
		p.pubMu.Lock()
		p.pubAt = time.Time{} // publish at the next tick
		p.pubMu.Unlock()
	}
	p.mu.Lock()
	defer p.unlock()
	if !p.paused {
		return
	}
	p.paused = false
	if p.elected && !p.leading {
		p.startLeadingLocked()
	}
}

// stepDown ends this node's leadership, writing what it accounted, within
// stepDownBudget. With a store known not to answer it writes nothing (the
// next leader continues from what the store holds) rather than hold up a
// shutdown.
func (p *Portal) stepDown() error {
	p.mu.Lock()
	if !p.leading {
		p.unlock()
		return nil
	}
	p.leading = false
	p.log.Info("no longer leading the status portal", "node", p.node)
	if !p.reachable() {
		p.log.Warn("store unreachable: status history since the last write is not saved", "since", p.lastFlush)
		p.unlock()
		return nil
	}
	p.accountLocked(p.now())
	p.unlock()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(p.life), stepDownBudget)
	defer cancel()
	return p.flush(ctx)
}

// stepDownBudget bounds the writes of a leader stepping down.
const stepDownBudget = 3 * time.Second

// reachable reports whether the store answered its last call; a store that
// cannot tell (the embedded one) always does.
func (p *Portal) reachable() bool {
	if r, ok := p.st.(interface{ Reachable() bool }); ok {
		return r.Reachable()
	}
	return true
}

// Leading reports whether this node currently decides for the fleet.
func (p *Portal) Leading() bool {
	p.mu.Lock()
	defer p.unlock()
	return p.leading
}

// Node returns the name under which this node publishes its observation.
func (p *Portal) Node() string { return p.node }
