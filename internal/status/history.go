package status

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"time"

	"gatehouse/internal/store"
)

const dayLayout = "2006-01-02"

// PartialWeight is the share of partial-outage time counted as downtime in
// the uptime percentage; major outage counts in full, degraded performance
// and maintenance not at all.
const PartialWeight = 0.3

// dayRecord is one UTC day of history: component id → state → seconds.
type dayRecord map[string]map[string]float64

func (d dayRecord) add(comp, state string, secs float64) {
	m := d[comp]
	if m == nil {
		m = map[string]float64{}
		d[comp] = m
	}
	m[state] += secs
}

// merge keeps, per component and state, the larger of two accounts of the
// same day (a record read back from the store and one accumulated here).
func (d dayRecord) merge(o dayRecord) {
	for comp, states := range o {
		for st, secs := range states {
			if secs > d[comp][st] {
				d.add(comp, st, secs-d[comp][st])
			}
		}
	}
}

// history is per-day time in each state, kept in memory for the days the
// page shows and written to the store under status/history/<day>.
type history struct {
	days  map[string]dayRecord
	dirty map[string]bool
}

// accountLocked adds the time since the last tick to each component's
// shown state, split at UTC midnight.
func (p *Portal) accountLocked(now time.Time) {
	from := p.lastTick
	p.lastTick = now
	for from.Before(now) {
		dayStart := time.Date(from.Year(), from.Month(), from.Day(), 0, 0, 0, 0, time.UTC)
		end := dayStart.AddDate(0, 0, 1)
		if now.Before(end) {
			end = now
		}
		day := dayStart.Format(dayLayout)
		rec := p.hist.days[day]
		if rec == nil {
			rec = dayRecord{}
			p.hist.days[day] = rec
		}
		secs := end.Sub(from).Seconds()
		for _, c := range p.comps {
			rec.add(c.ID, c.status, secs)
		}
		p.hist.dirty[day] = true
		from = end
	}
	cutoff := now.AddDate(0, 0, -HistoryDays-1).Format(dayLayout)
	for day := range p.hist.days {
		if day < cutoff {
			delete(p.hist.days, day)
		}
	}
}

// staleNodeAfter is how long the leader keeps the observation of a node
// that stopped publishing before deleting it from the store.
const staleNodeAfter = time.Hour

// flush writes the days accounted since the last flush and, on the
// leader, its decisions (status/state), and deletes the records of stale
// nodes. The store is written outside the portal's lock: the write is
// prepared under it, committed without it, and its revisions recorded
// under it again; flushMu keeps flushes in order, so an older state never
// overwrites a newer one. Days whose write failed are written next time.
func (p *Portal) flush(ctx context.Context) error {
	p.flushMu.Lock()
	defer p.flushMu.Unlock()
	p.mu.Lock()
	w, err := p.prepareFlushLocked()
	p.mu.Unlock()
	if err != nil || w == nil {
		return err
	}
	rev, err := p.st.Txn(ctx, nil, w.ops)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		for _, day := range w.days {
			p.hist.dirty[day] = true
		}
		return fmt.Errorf("writing %d days of history: %w", len(w.days), err)
	}
	for _, k := range w.keys {
		if rev > p.revs[k] {
			p.revs[k] = rev
		}
	}
	if w.fleet != nil && p.leading {
		p.fleet = *w.fleet
	}
	return nil
}

// flushWrite is a flush prepared under the portal's lock.
type flushWrite struct {
	ops   []store.Op
	keys  []string    // the keys put, whose revisions the portal records
	days  []string    // the days written, dirty again if the write fails
	fleet *fleetState // the leader's decisions written; nil on a follower
}

// prepareFlushLocked takes what flush writes and marks it clean; nil when
// there is nothing to write.
func (p *Portal) prepareFlushLocked() (*flushWrite, error) {
	now := p.now()
	p.lastFlush = now
	if p.st == nil || (!p.leading && len(p.hist.dirty) == 0) {
		clear(p.hist.dirty)
		return nil, nil
	}
	w := &flushWrite{}
	for day := range p.hist.dirty {
		rec, ok := p.hist.days[day]
		if !ok {
			continue
		}
		b, err := json.Marshal(rec)
		if err != nil {
			return nil, err
		}
		w.ops = append(w.ops, store.Put(keyHistory+day, b))
		w.keys = append(w.keys, keyHistory+day)
		w.days = append(w.days, day)
	}
	if p.leading {
		fs := p.fleetStateLocked()
		b, err := json.Marshal(fs)
		if err != nil {
			return nil, err
		}
		w.fleet = &fs
		w.ops = append(w.ops, store.Put(keyState, b))
		w.keys = append(w.keys, keyState)
		for name, nv := range p.nodes {
			if name != p.node && now.Sub(nv.latest.At) > staleNodeAfter {
				w.ops = append(w.ops, store.Delete(keyNodes+name))
				delete(p.nodes, name)
			}
		}
	}
	clear(p.hist.dirty)
	if len(w.ops) == 0 {
		return nil, nil
	}
	return w, nil
}

// Day is one day of a component's uptime bar.
type Day struct {
	Date  string // YYYY-MM-DD
	State string // worst state seen that day, or "" for no data
	// Down is the weighted seconds of outage; Tracked the seconds measured.
	Down, Tracked float64
}

// Label describes the day for a tooltip and screen readers.
func (d Day) Label() string {
	if d.State == "" {
		return d.Date + ": no data"
	}
	if d.Down == 0 {
		return d.Date + ": " + StatusText(d.State)
	}
	return fmt.Sprintf("%s: %s, %s of downtime", d.Date, StatusText(d.State), (time.Duration(d.Down) * time.Second).Round(time.Minute))
}

// uptimeLocked returns the last HistoryDays days of a component, oldest
// first, and the uptime percentage over them. Today's colour includes the
// current state even before its time is accounted.
func (p *Portal) uptimeLocked(id string, now time.Time) ([]Day, float64) {
	days := make([]Day, HistoryDays)
	var down, tracked float64
	today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	for i := range days {
		date := today.AddDate(0, 0, i-HistoryDays+1).Format(dayLayout)
		d := Day{Date: date}
		worst := -1
		for st, secs := range p.hist.days[date][id] {
			if secs <= 0 {
				continue
			}
			if r := dayRank(st); r > worst {
				d.State, worst = st, r
			}
			switch st {
			case Major:
				d.Down += secs
			case Partial:
				d.Down += secs * PartialWeight
			}
			if st != Maintenance {
				d.Tracked += secs
			}
		}
		if i == HistoryDays-1 {
			if c := p.byID[id]; c != nil {
				if dayRank(c.status) > worst {
					d.State = c.status
				}
				// The time in the current state since the last accounting.
				if ongoing := now.Sub(p.lastTick).Seconds(); ongoing > 0 && !p.lastTick.IsZero() {
					switch c.status {
					case Major:
						d.Down += ongoing
					case Partial:
						d.Down += ongoing * PartialWeight
					}
					if c.status != Maintenance {
						d.Tracked += ongoing
					}
				}
			}
		}
		down += d.Down
		tracked += d.Tracked
		days[i] = d
	}
	if tracked == 0 {
		return days, 100
	}
	// Round down so any downtime shows below 100%.
	return days, math.Floor((1-down/tracked)*10000) / 100
}

// dayRank orders states for a day's colour: maintenance sits between
// operational and degraded performance.
func dayRank(st string) int {
	if st == Maintenance {
		return 1
	}
	return rank(st) * 2
}
