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

// flushLocked writes the days accounted since the last flush and, on the
// leader, its decisions, in one transaction; it also forgets nodes that
// have not published for staleNodeAfter.
func (p *Portal) flushLocked(ctx context.Context) error {
	now := p.now()
	p.lastFlush = now
	if p.st == nil || (!p.leading && len(p.hist.dirty) == 0) {
		clear(p.hist.dirty)
		return nil
	}
	var ops []store.Op
	var keys []string
	for day := range p.hist.dirty {
		rec, ok := p.hist.days[day]
		if !ok {
			continue
		}
		b, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		ops = append(ops, store.Put(keyHistory+day, b))
		keys = append(keys, keyHistory+day)
	}
	if p.leading {
		b, err := json.Marshal(p.fleetStateLocked())
		if err != nil {
			return err
		}
		ops = append(ops, store.Put(keyState, b))
		keys = append(keys, keyState)
		for name, nv := range p.nodes {
			if name != p.node && now.Sub(nv.latest.At) > staleNodeAfter {
				ops = append(ops, store.Delete(keyNodes+name))
				delete(p.nodes, name)
			}
		}
	}
	rev, err := p.st.Txn(ctx, nil, ops)
	if err != nil {
		return fmt.Errorf("writing %d days of history: %w", len(p.hist.dirty), err)
	}
	for _, k := range keys {
		p.revs[k] = rev
	}
	if p.leading {
		p.fleet = p.fleetStateLocked()
	}
	clear(p.hist.dirty)
	return nil
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
