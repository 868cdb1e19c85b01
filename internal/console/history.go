package console

import (
	"context"
	"fmt"
	"html/template"
	"strings"
	"sync"
	"time"

	"gatehouse/internal/capacity"
)

// History defaults: one sample a minute, 24 hours kept.
const (
	DefaultSampleEvery = time.Minute
	DefaultSamples     = 1440
)

// point is one resource at one sample.
type point struct {
	usage, limit int64
}

// sample is every resource at one time.
type sample struct {
	at  time.Time
	res map[string]point
}

// History is a bounded ring of capacity samples kept in this node's memory:
// the console draws each resource over the last 24 hours from it.
type History struct {
	mu   sync.Mutex
	ring []sample
	next int // where the next sample goes
	full bool
}

// NewHistory returns a ring of n samples (0: DefaultSamples).
func NewHistory(n int) *History {
	if n <= 0 {
		n = DefaultSamples
	}
	return &History{ring: make([]sample, n)}
}

// Add records one sample of the resources; the oldest falls out at the bound.
func (h *History) Add(at time.Time, rs []capacity.Resource) {
	m := make(map[string]point, len(rs))
	for _, r := range rs {
		m[r.Name] = point{r.Usage, r.Limit}
	}
	h.mu.Lock()
	h.ring[h.next] = sample{at: at, res: m}
	h.next++
	if h.next == len(h.ring) {
		h.next, h.full = 0, true
	}
	h.mu.Unlock()
}

// Len reports the samples held.
func (h *History) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.full {
		return len(h.ring)
	}
	return h.next
}

// series returns one resource's points, oldest first (a sample where it
// was missing is left out).
func (h *History) series(name string) []point {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []point
	add := func(ss []sample) {
		for _, s := range ss {
			if p, ok := s.res[name]; ok {
				out = append(out, p)
			}
		}
	}
	if h.full {
		add(h.ring[h.next:])
	}
	add(h.ring[:h.next])
	return out
}

// Run samples source at once, then every period until ctx ends.
func (h *History) Run(ctx context.Context, every time.Duration, source func() []capacity.Resource) {
	if every <= 0 {
		every = DefaultSampleEvery
	}
	h.Add(time.Now(), source())
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			h.Add(now, source())
		}
	}
}

// Sparkline geometry, in SVG user units.
const (
	sparkW = 240
	sparkH = 40
)

// sparkline draws points as an inline SVG polyline. With a limit, the
// vertical axis is 0–100 % of it and the warning and critical levels are
// drawn as dashed lines; without one, it runs from 0 to the largest usage
// seen. Presentation attributes only: no style attribute, which the
// console's policy would refuse.
func sparkline(ps []point, warn, crit float64) template.HTML {
	ps = downsample(ps, sparkW)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="spark" xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img">`, sparkW, sparkH, sparkW, sparkH)
	limited := false
	var top int64
	for _, p := range ps {
		if p.limit > 0 {
			limited = true
		}
		top = max(top, p.usage)
	}
	y := func(p point) float64 {
		var f float64
		switch {
		case limited && p.limit > 0:
			f = float64(p.usage) / float64(p.limit)
		case limited:
			f = 0
		case top > 0:
			f = float64(p.usage) / float64(top)
		}
		f = min(max(f, 0), 1)
		return float64(sparkH-1) - f*float64(sparkH-2)
	}
	if limited {
		for _, l := range []struct {
			pct   float64
			class string
			color string
		}{{warn, "warn", "#c80"}, {crit, "crit", "#c00"}} {
			ly := float64(sparkH-1) - l.pct/100*float64(sparkH-2)
			fmt.Fprintf(&b, `<line class="%s" x1="0" x2="%d" y1="%.1f" y2="%.1f" stroke="%s" stroke-dasharray="3 2" stroke-width="1"/>`, l.class, sparkW, ly, ly, l.color)
		}
	}
	switch len(ps) {
	case 0:
	case 1:
		fmt.Fprintf(&b, `<circle cx="%d" cy="%.1f" r="2" fill="#246"/>`, sparkW-2, y(ps[0]))
	default:
		b.WriteString(`<polyline fill="none" stroke="#246" stroke-width="1.5" points="`)
		step := float64(sparkW) / float64(len(ps)-1)
		for i, p := range ps {
			if i > 0 {
				b.WriteByte(' ')
			}
			fmt.Fprintf(&b, "%.1f,%.1f", float64(i)*step, y(p))
		}
		b.WriteString(`"/>`)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) // built here from numbers only
}

// downsample cuts a series to at most n points, one per run of adjacent
// samples, keeping each run's highest usage (a peak stays visible) with the
// limit of that sample.
func downsample(ps []point, n int) []point {
	if len(ps) <= n {
		return ps
	}
	out := make([]point, n)
	for i := range out {
		lo, hi := i*len(ps)/n, (i+1)*len(ps)/n
		best := ps[lo]
		for _, p := range ps[lo+1 : hi] {
			if p.usage > best.usage {
				best = p
			}
		}
		out[i] = best
	}
	return out
}
