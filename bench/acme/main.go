// Command acme simulates Gatehouse's ACME renewal schedule for a fleet of
// managed hostnames on a simulated clock (no CA): how many renewals fall in
// each minute over a period, peak against mean, for several certificate
// lifetimes, after a cold start and after a restart, and what the schedule
// costs in memory and start-up time. See run.sh and bench/README.md
// ("ACME renewal at scale").
//
// Scenarios:
//
//	cold     every certificate issued at the same second on day 0
//	spread   certificates issued spread over one renewal interval, and the
//	         renewal process run for two lifetimes before day 0 (steady state)
//	restart  spread, and the node restarts half-way: the queue is rebuilt
//	         from the stored certificates (NotBefore/NotAfter) and, for
//	         comparison, decoded from a snapshot
//
// The renewal loop is simulated as Gatehouse runs it: once a minute it pops
// the due names (schedule.Queue.PopDue) up to a cap of -pace times the
// long-run mean rate, renews each at that minute (a new certificate valid
// from then for the lifetime) and schedules its next renewal with
// schedule.RenewAt seeded by the name and the new NotBefore.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"log"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"gatehouse/internal/acme/schedule"
)

const day = 24 * time.Hour

var t0 = time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)

type config struct {
	n         int
	days      int
	lifetimes []int
	scenarios []string
	pace      float64
	seed      uint64
}

func main() {
	log.SetFlags(log.Ltime)
	log.SetPrefix("acme: ")
	var cfg config
	var lifetimes, scenarios string
	flag.IntVar(&cfg.n, "n", 1_000_000, "managed hostnames")
	flag.IntVar(&cfg.days, "days", 60, "measured period in days")
	flag.StringVar(&lifetimes, "lifetimes", "90,45,6", "certificate lifetimes in days")
	flag.StringVar(&scenarios, "scenarios", "cold,spread,restart", "scenarios (cold, spread, restart)")
	flag.Float64Var(&cfg.pace, "pace", 2, "renewals popped per minute at most, as a multiple of the long-run mean (0: no cap)")
	flag.Uint64Var(&cfg.seed, "seed", 1, "random seed for issuance times")
	flag.Parse()
	for _, f := range strings.Split(lifetimes, ",") {
		d, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || d <= 0 {
			log.Fatalf("-lifetimes: %q is not a number of days", f)
		}
		cfg.lifetimes = append(cfg.lifetimes, d)
	}
	for _, s := range strings.Split(scenarios, ",") {
		switch s = strings.TrimSpace(s); s {
		case "cold", "spread", "restart":
			cfg.scenarios = append(cfg.scenarios, s)
		default:
			log.Fatalf("-scenarios: unknown scenario %q", s)
		}
	}
	if cfg.n <= 0 || cfg.n > 9_999_999 || cfg.days <= 0 {
		log.Fatal("-n must be 1..9999999 and -days positive")
	}

	fmt.Printf("ACME renewal schedule: %d hostnames, %d days measured, GOMAXPROCS=%d, %s\n\n",
		cfg.n, cfg.days, runtime.GOMAXPROCS(0), runtime.Version())
	var results []result
	for _, l := range cfg.lifetimes {
		for _, s := range cfg.scenarios {
			r := run(cfg, time.Duration(l)*day, s)
			results = append(results, r)
		}
	}
	printTable(os.Stdout, cfg, results)
}

type result struct {
	lifetime    time.Duration
	scenario    string
	interval    time.Duration // mean renewal interval
	renewals    int           // executed in the measured period
	longMean    float64       // N / interval, per minute
	obsMean     float64       // renewals / minutes measured
	demandPeakM int           // most renewal times scheduled in one minute
	demandPeakH int           // ... in one hour
	execPeakM   int           // most renewals run in one minute (paced)
	execPeakH   int
	cap         int
	maxLag      time.Duration // longest a due renewal waited for the pace
	heapBytes   int64         // measured heap of the queue after the first load
	queueBytes  int64         // the queue's own estimate
	loadTime    time.Duration // building the queue (Load), wall
	loadCPU     time.Duration // ... CPU
	rebuild     restartStats
}

type restartStats struct {
	done          bool
	at            time.Time
	rebuildWall   time.Duration // Load from stored NotBefore/NotAfter, seeded draws
	rebuildCPU    time.Duration
	identical     bool // the rebuilt queue equals the live one
	snapshotBytes int
	encodeWall    time.Duration
	decodeWall    time.Duration
	decodeCPU     time.Duration
	stormUnseeded int // names due at once if the rebuild drew fresh random times
	dueSeeded     int // names due at once after the seeded rebuild
	peakAfterM    int // most renewals run in a minute in the hour after
	peakAfterH    int // renewals run in the hour after
}

// hostname is the i-th managed name (one allocation, as reading it from
// the store would cost).
func hostname(i int) string {
	var b [27]byte
	copy(b[:], "www.customer0000000.example")
	for p := 18; i > 0 && p >= 12; p-- {
		b[p] = byte('0' + i%10)
		i /= 10
	}
	return string(b[:])
}

func hostIndex(name string) int {
	i, err := strconv.Atoi(name[12:19])
	if err != nil {
		panic(err)
	}
	return i
}

// meanInterval is the mean time between renewals without ARI: 2/3 of the
// lifetime, 1/2 for short lifetimes (schedule.RenewAt).
func meanInterval(l time.Duration) time.Duration {
	if l <= schedule.ShortLifetime {
		return l / 2
	}
	return l - l/3
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func heapAlloc() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// sim is one simulated fleet.
type sim struct {
	n        int
	life     time.Duration
	nb       []int64 // by host: current certificate's NotBefore, Unix seconds (the "store")
	q        *schedule.Queue
	pcg      *rand.PCG
	r        *rand.Rand
	from, to int64 // measured period, Unix seconds
	demand   []int32
	exec     []int32
}

func (s *sim) renewAt(name string, nb time.Time) time.Time {
	s.pcg.Seed(schedule.Seed(name, nb))
	return schedule.RenewAt(nb, nb.Add(s.life), nil, s.r)
}

func (s *sim) count(hist []int32, t time.Time) {
	sec := t.Unix()
	if sec >= s.from && sec < s.to {
		hist[(sec-s.from)/60]++
	}
}

// entries yields every host's next renewal from the store.
func (s *sim) entries(seeded bool, r *rand.Rand) func(func(string, time.Time) bool) {
	return func(yield func(string, time.Time) bool) {
		for i, nb := range s.nb {
			name := hostname(i)
			t := time.Unix(nb, 0)
			var at time.Time
			if seeded {
				at = s.renewAt(name, t)
			} else {
				at = schedule.RenewAt(t, t.Add(s.life), nil, r)
			}
			if !yield(name, at) {
				return
			}
		}
	}
}

func run(cfg config, life time.Duration, scenario string) result {
	res := result{lifetime: life, scenario: scenario, interval: meanInterval(life)}
	minutes := cfg.days * 24 * 60
	s := &sim{
		n: cfg.n, life: life, nb: make([]int64, cfg.n),
		from: t0.Unix(), to: t0.Add(time.Duration(cfg.days) * day).Unix(),
		demand: make([]int32, minutes), exec: make([]int32, minutes),
	}
	s.pcg = rand.NewPCG(0, 0)
	s.r = rand.New(s.pcg)
	rnd := rand.New(rand.NewPCG(cfg.seed, uint64(life)))

	start := t0
	switch scenario {
	case "cold":
		for i := range s.nb {
			s.nb[i] = t0.Unix()
		}
	default:
		// Issued uniformly over one renewal interval, two lifetimes before
		// day 0; the renewals of the warm-up are not measured.
		start = t0.Add(-2 * life)
		for i := range s.nb {
			s.nb[i] = start.Unix() + rnd.Int64N(int64(res.interval/time.Second))
		}
	}

	before := heapAlloc()
	w, c := time.Now(), cpuTime()
	s.q = schedule.New()
	s.q.Grow(s.n)
	s.q.Load(func(yield func(string, time.Time) bool) {
		for name, at := range s.entries(true, nil) {
			s.count(s.demand, at)
			if !yield(name, at) {
				return
			}
		}
	})
	res.loadTime, res.loadCPU = time.Since(w), cpuTime()-c
	res.heapBytes = heapAlloc() - before
	res.queueBytes = s.q.Bytes()

	res.longMean = float64(cfg.n) / res.interval.Minutes()
	res.cap = math.MaxInt
	if cfg.pace > 0 {
		res.cap = max(1, int(cfg.pace*res.longMean))
	}
	restartAt := t0.Add(time.Duration(cfg.days) * day / 2)
	end := time.Unix(s.to, 0)
	var due []string
	for now := start; now.Before(end); {
		if scenario == "restart" && !res.rebuild.done && !now.Before(restartAt) {
			res.rebuild = s.restart(now, cfg.seed)
		}
		next, ok := s.q.Next()
		if !ok {
			break
		}
		if next.After(now) {
			// Sleep to the minute the next renewal is due in.
			now = now.Add(next.Sub(now).Truncate(time.Minute))
			if next.After(now) {
				now = now.Add(time.Minute)
			}
			if scenario == "restart" && !res.rebuild.done && now.After(restartAt) {
				now = restartAt
			}
			continue
		}
		if lag := now.Sub(next); lag > res.maxLag && now.Unix() >= s.from {
			res.maxLag = lag
		}
		due = s.q.PopDue(now, res.cap, due[:0])
		for _, name := range due {
			i := hostIndex(name)
			s.nb[i] = now.Unix()
			at := s.renewAt(name, now)
			s.q.Set(name, at)
			s.count(s.demand, at)
			s.count(s.exec, now)
		}
		now = now.Add(time.Minute)
	}

	for m, c := range s.exec {
		res.renewals += int(c)
		res.execPeakM = max(res.execPeakM, int(c))
		res.demandPeakM = max(res.demandPeakM, int(s.demand[m]))
	}
	res.obsMean = float64(res.renewals) / float64(minutes)
	res.demandPeakH = peakHour(s.demand)
	res.execPeakH = peakHour(s.exec)
	if res.rebuild.done {
		m := int(res.rebuild.at.Sub(t0) / time.Minute)
		h := 0
		for _, c := range s.exec[m:min(m+60, len(s.exec))] {
			res.rebuild.peakAfterM = max(res.rebuild.peakAfterM, int(c))
			h += int(c)
		}
		res.rebuild.peakAfterH = h
	}
	log.Printf("%v %s: %d renewals, demand peak %d/min, run peak %d/min, mean %.1f/min, lag %v",
		life/day*day, scenario, res.renewals, res.demandPeakM, res.execPeakM, res.longMean, res.maxLag)
	return res
}

func peakHour(hist []int32) int {
	peak := 0
	for h := 0; h+60 <= len(hist); h += 60 {
		n := 0
		for _, c := range hist[h : h+60] {
			n += int(c)
		}
		peak = max(peak, n)
	}
	return peak
}

// restart replaces the live queue by one rebuilt from the store, as a node
// does at start-up, and measures the alternatives.
func (s *sim) restart(now time.Time, seed uint64) restartStats {
	st := restartStats{done: true, at: now}

	var buf bytes.Buffer
	w := time.Now()
	if err := s.q.Encode(&buf); err != nil {
		log.Fatal(err)
	}
	st.encodeWall = time.Since(w)
	st.snapshotBytes = buf.Len()
	w, c := time.Now(), cpuTime()
	if _, err := schedule.Decode(&buf); err != nil {
		log.Fatal(err)
	}
	st.decodeWall, st.decodeCPU = time.Since(w), cpuTime()-c

	// Fresh random draws: how many names would be due at once.
	r := rand.New(rand.NewPCG(seed, 42))
	for _, at := range s.entries(false, r) {
		if !at.After(now) {
			st.stormUnseeded++
		}
	}

	live := s.q
	s.q = nil
	runtime.GC()
	w, c = time.Now(), cpuTime()
	q := schedule.New()
	q.Grow(s.n)
	q.Load(s.entries(true, nil))
	st.rebuildWall, st.rebuildCPU = time.Since(w), cpuTime()-c

	for _, at := range s.entries(true, nil) {
		if !at.After(now) {
			st.dueSeeded++
		}
	}
	st.identical = q.Len() == live.Len()
	for i := 0; i < s.n && st.identical; i++ {
		a, _ := q.Get(hostname(i))
		b, _ := live.Get(hostname(i))
		st.identical = a.Equal(b)
	}
	s.q = q
	return st
}

func printTable(out *os.File, cfg config, results []result) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "lifetime\tscenario\trenewals\tlong-run mean/min\tscheduled peak/min\t÷mean\tscheduled peak/h\t÷mean\tcap/min\trun peak/min\t÷mean\tmax wait for pace\t")
	for _, r := range results {
		fmt.Fprintf(tw, "%dd\t%s\t%d\t%.1f\t%d\t%.2f\t%d\t%.2f\t%s\t%d\t%.2f\t%s\t\n",
			r.lifetime/day, r.scenario, r.renewals, r.longMean,
			r.demandPeakM, float64(r.demandPeakM)/r.longMean,
			r.demandPeakH, float64(r.demandPeakH)/(60*r.longMean),
			capString(r.cap), r.execPeakM, float64(r.execPeakM)/r.longMean, r.maxLag)
	}
	tw.Flush()

	fmt.Fprintln(out)
	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "lifetime\tscenario\tqueue heap MiB\tBytes() MiB\tbytes/name\tfirst Load wall\tCPU\t")
	for _, r := range results {
		fmt.Fprintf(tw, "%dd\t%s\t%.1f\t%.1f\t%.1f\t%s\t%s\t\n", r.lifetime/day, r.scenario,
			float64(r.heapBytes)/(1<<20), float64(r.queueBytes)/(1<<20),
			float64(r.heapBytes)/float64(cfg.n), r.loadTime.Round(time.Millisecond), r.loadCPU.Round(time.Millisecond))
	}
	tw.Flush()

	var restarts []result
	for _, r := range results {
		if r.rebuild.done {
			restarts = append(restarts, r)
		}
	}
	if len(restarts) == 0 {
		return
	}
	fmt.Fprintln(out)
	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "lifetime\trestart at\trebuild wall\trebuild CPU\tsame times\tsnapshot MB\tencode\tdecode wall\tdecode CPU\tpeak/min next hour\tnext hour\tdue at once\tdue at once if redrawn\t")
	for _, r := range restarts {
		st := r.rebuild
		fmt.Fprintf(tw, "%dd\tday %d\t%s\t%s\t%v\t%.1f\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t\n", r.lifetime/day,
			int(st.at.Sub(t0)/day), st.rebuildWall.Round(time.Millisecond), st.rebuildCPU.Round(time.Millisecond),
			st.identical, float64(st.snapshotBytes)/1e6, st.encodeWall.Round(time.Millisecond),
			st.decodeWall.Round(time.Millisecond), st.decodeCPU.Round(time.Millisecond), st.peakAfterM, st.peakAfterH, st.dueSeeded, st.stormUnseeded)
	}
	tw.Flush()
}

func capString(c int) string {
	if c == math.MaxInt {
		return "none"
	}
	return strconv.Itoa(c)
}
