package schedule

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

const day = 24 * time.Hour

func frac(life time.Duration, f float64) time.Duration {
	return time.Duration(float64(life) * f)
}

func TestRenewAt(t *testing.T) {
	now := t0.Add(30 * day)
	tests := []struct {
		name       string
		nb, na     time.Time
		ari        *Window
		lo, hi     time.Time // result in [lo, hi]
		wantBefore time.Time // if set: result before this (due now)
	}{
		{
			name: "90 days, no ARI: 1/3 left ±1/5",
			nb:   t0, na: t0.Add(90 * day),
			lo: t0.Add(frac(90*day, 2.0/3-0.2)), hi: t0.Add(frac(90*day, 2.0/3+0.2)),
		},
		{
			name: "45 days, no ARI",
			nb:   t0, na: t0.Add(45 * day),
			lo: t0.Add(frac(45*day, 2.0/3-0.2)), hi: t0.Add(frac(45*day, 2.0/3+0.2)),
		},
		{
			name: "6 days: half of the lifetime ±1/5",
			nb:   t0, na: t0.Add(6 * day),
			lo: t0.Add(frac(6*day, 0.3)), hi: t0.Add(frac(6*day, 0.7)),
		},
		{
			name: "exactly 10 days counts as short",
			nb:   t0, na: t0.Add(10 * day),
			lo: t0.Add(3 * day), hi: t0.Add(7 * day),
		},
		{
			name: "10 days and a second counts as long",
			nb:   t0, na: t0.Add(10*day + time.Second),
			lo: t0.Add(frac(10*day+time.Second, 2.0/3-0.2)), hi: t0.Add(frac(10*day+time.Second, 2.0/3+0.2)),
		},
		{
			name: "ARI window inside the lifetime",
			nb:   t0, na: t0.Add(90 * day),
			ari: &Window{Start: t0.Add(50 * day), End: t0.Add(52 * day)},
			lo:  t0.Add(50 * day), hi: t0.Add(52 * day),
		},
		{
			name: "ARI window in the past: due now",
			nb:   t0, na: t0.Add(90 * day),
			ari: &Window{Start: t0.Add(10 * day), End: t0.Add(11 * day)},
			lo:  t0.Add(10 * day), hi: t0.Add(11 * day), wantBefore: now,
		},
		{
			name: "ARI window before notBefore (CA wants it now)",
			nb:   t0, na: t0.Add(90 * day),
			ari: &Window{Start: t0.Add(-2 * day), End: t0.Add(-day)},
			lo:  t0.Add(-2 * day), hi: t0.Add(-day), wantBefore: now,
		},
		{
			name: "ARI window ending after the emergency point is clamped",
			nb:   t0, na: t0.Add(100 * day),
			ari: &Window{Start: t0.Add(90 * day), End: t0.Add(99 * day)},
			lo:  t0.Add(90 * day), hi: t0.Add(95 * day),
		},
		{
			name: "ARI window entirely after the emergency point: the emergency point",
			nb:   t0, na: t0.Add(100 * day),
			ari: &Window{Start: t0.Add(96 * day), End: t0.Add(99 * day)},
			lo:  t0.Add(95 * day), hi: t0.Add(95 * day),
		},
		{
			name: "empty ARI window is ignored",
			nb:   t0, na: t0.Add(90 * day),
			ari: &Window{Start: t0.Add(5 * day), End: t0.Add(5 * day)},
			lo:  t0.Add(frac(90*day, 2.0/3-0.2)), hi: t0.Add(frac(90*day, 2.0/3+0.2)),
		},
		{
			name: "inverted ARI window is ignored",
			nb:   t0, na: t0.Add(90 * day),
			ari: &Window{Start: t0.Add(6 * day), End: t0.Add(5 * day)},
			lo:  t0.Add(frac(90*day, 2.0/3-0.2)), hi: t0.Add(frac(90*day, 2.0/3+0.2)),
		},
		{
			name: "empty validity: due at notBefore",
			nb:   t0, na: t0,
			lo: t0, hi: t0,
		},
		{
			name: "inverted validity: due at notBefore",
			nb:   t0, na: t0.Add(-day),
			lo: t0, hi: t0,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, 2))
			var min, max time.Time
			for i := 0; i < 5000; i++ {
				got := RenewAt(tc.nb, tc.na, tc.ari, r)
				if got.Before(tc.lo) || got.After(tc.hi) {
					t.Fatalf("RenewAt = %v, want in [%v, %v]", got, tc.lo, tc.hi)
				}
				if !tc.wantBefore.IsZero() && !got.Before(tc.wantBefore) {
					t.Fatalf("RenewAt = %v, want before %v (due now)", got, tc.wantBefore)
				}
				if i == 0 || got.Before(min) {
					min = got
				}
				if i == 0 || got.After(max) {
					max = got
				}
			}
			// The draws cover the range: min and max within 1% of its ends.
			slack := tc.hi.Sub(tc.lo) / 100
			if min.Sub(tc.lo) > slack || tc.hi.Sub(max) > slack {
				t.Errorf("draws span [%v, %v], want close to [%v, %v]", min, max, tc.lo, tc.hi)
			}
		})
	}
}

// A million certificates issued at the same second do not renew together:
// the renewal times spread evenly over the jitter range.
func TestRenewAtSpread(t *testing.T) {
	for _, life := range []time.Duration{90 * day, 45 * day, 6 * day} {
		t.Run(life.String(), func(t *testing.T) {
			const n, buckets = 200000, 50
			r := rand.New(rand.NewPCG(3, 4))
			centre, spread := frac(life, 2.0/3), frac(life, 0.4)
			if life <= ShortLifetime {
				centre = life / 2
			}
			lo := t0.Add(centre - spread/2)
			var hist [buckets]int
			seconds := map[int64]bool{}
			for i := 0; i < n; i++ {
				at := RenewAt(t0, t0.Add(life), nil, r)
				b := int(at.Sub(lo) * buckets / spread)
				if b < 0 || b >= buckets {
					t.Fatalf("renewal %v outside the spread", at)
				}
				hist[b]++
				seconds[at.Unix()] = true
			}
			mean := float64(n) / buckets
			for b, c := range hist {
				// 4000 per bucket: 5 standard deviations is about ±8 %.
				if math.Abs(float64(c)-mean) > 0.1*mean {
					t.Errorf("bucket %d holds %d, want %.0f ± 10%%", b, c, mean)
				}
			}
			// n uniform draws over S seconds occupy S(1-e^(-n/S)) of them.
			S := spread.Seconds()
			if want := S * (1 - math.Exp(-n/S)); float64(len(seconds)) < 0.97*want {
				t.Errorf("%d renewals share %d distinct seconds, want about %.0f", n, len(seconds), want)
			}
		})
	}
}

func TestSeeded(t *testing.T) {
	na := t0.Add(90 * day)
	a := RenewAt(t0, na, nil, Seeded("shop.example.com", t0))
	b := RenewAt(t0, na, nil, Seeded("shop.example.com", t0))
	if !a.Equal(b) {
		t.Errorf("same name and notBefore: %v then %v", a, b)
	}
	pcg := rand.NewPCG(Seed("shop.example.com", t0))
	if again := RenewAt(t0, na, nil, rand.New(pcg)); !again.Equal(a) {
		t.Errorf("Seed and Seeded disagree: %v and %v", again, a)
	}
	c := RenewAt(t0, na, nil, Seeded("shop.example.org", t0))
	d := RenewAt(t0.Add(time.Second), na, nil, Seeded("shop.example.com", t0.Add(time.Second)))
	if a.Equal(c) || a.Equal(d) {
		t.Errorf("different certificates renew at the same instant: %v %v %v", a, c, d)
	}
}

func TestEmergency(t *testing.T) {
	nb, na := t0, t0.Add(100*day)
	tests := []struct {
		name   string
		nb, na time.Time
		now    time.Time
		want   bool
	}{
		{"fresh", nb, na, t0, false},
		{"at 1/3 left", nb, na, t0.Add(67 * day), false},
		{"just before 1/20 left", nb, na, na.Add(-5*day - time.Second), false},
		{"exactly 1/20 left", nb, na, na.Add(-5 * day), true},
		{"less than 1/20 left", nb, na, na.Add(-day), true},
		{"expired", nb, na, na.Add(day), true},
		{"6 days, 7h left", t0, t0.Add(6 * day), t0.Add(6*day - 7*time.Hour), true},
		{"6 days, 8h left", t0, t0.Add(6 * day), t0.Add(6*day - 8*time.Hour), false},
		{"empty validity", t0, t0, t0.Add(-day), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Emergency(tc.nb, tc.na, tc.now); got != tc.want {
				t.Errorf("Emergency = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	tests := []struct {
		attempt int
		nominal time.Duration
	}{
		{-3, time.Minute},
		{0, time.Minute},
		{1, time.Minute},
		{2, 2 * time.Minute},
		{3, 4 * time.Minute},
		{9, 256 * time.Minute},
		{10, 6 * time.Hour},
		{20, 6 * time.Hour},
		{21, 6 * time.Hour},
		{64, 6 * time.Hour},
		{math.MaxInt, 6 * time.Hour},
	}
	r := rand.New(rand.NewPCG(5, 6))
	for _, tc := range tests {
		lo, hi := tc.nominal-tc.nominal/4, tc.nominal
		var min, max time.Duration = math.MaxInt64, 0
		for i := 0; i < 2000; i++ {
			got := Backoff(tc.attempt, r)
			if got < lo || got > hi {
				t.Fatalf("Backoff(%d) = %v, want in [%v, %v]", tc.attempt, got, lo, hi)
			}
			min, max = minD(min, got), maxD(max, got)
		}
		if max-min < tc.nominal/5 {
			t.Errorf("Backoff(%d) spans only [%v, %v]: no jitter", tc.attempt, min, max)
		}
	}
	if got := Backoff(1, nil); got < 45*time.Second || got > BackoffMax {
		t.Errorf("Backoff(1, nil) = %v", got)
	}
}

func minD(a, b time.Duration) time.Duration {
	if a < b {
		return a
	}
	return b
}

func maxD(a, b time.Duration) time.Duration {
	if a > b {
		return a
	}
	return b
}
