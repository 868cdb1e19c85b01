package main

import (
	"context"
	"fmt"
	"log"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"gatehouse/internal/admin"
)

// pct returns the p-th percentile of ds (sorted in place).
func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[min(len(ds)-1, int(p*float64(len(ds))))]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/1e6) }

// liveAdds adds count new certificates one at a time through the admin API
// and checks that the very next handshake for each name gets it.
func liveAdds(nd *node, ca *ca, count int, res *results) error {
	type gen struct {
		name string
		pem  []byte
	}
	certs := make([]gen, count)
	stamp := time.Now().Unix() % 100000
	for i := range certs {
		name := fmt.Sprintf("live%05d-%05d.example.test", stamp, i)
		b, _, err := ca.leaf(name)
		if err != nil {
			return err
		}
		certs[i] = gen{name, b}
	}
	var lat []time.Duration
	wrong := 0
	for _, g := range certs {
		start := time.Now()
		r, err := nd.admin.AddCert(context.Background(), g.pem, nil)
		lat = append(lat, time.Since(start))
		if err != nil {
			return fmt.Errorf("adding %s: %w", g.name, err)
		}
		leaf, err := nd.handshake(context.Background(), g.name)
		if err != nil || leaf.SerialNumber.Text(16) != r.Cert.Serial {
			wrong++
			if wrong <= 3 {
				log.Printf("next handshake for %s after its add: %v", g.name, err)
			}
		}
	}
	p50, p99 := pct(lat, 0.50), pct(lat, 0.99)
	res.add(fmt.Sprintf("live add via admin API, %d adds: p50 / p99 / max", count), ms(p50)+" / "+ms(p99)+" / "+ms(lat[len(lat)-1]), "p99 ≤ 20 ms", ptr(p99 <= 20*time.Millisecond))
	res.add("  next handshake gets the new certificate", fmt.Sprintf("%d of %d", count-wrong, count), "all", ptr(wrong == 0))
	return nil
}

// churnName is the state of one name changed during the churn, as the
// admin API reported it. gen is odd while a change is in flight.
type churnName struct {
	mu        sync.Mutex
	gen       int
	installed bool
	serial    string
	id        string
}

func (s *churnName) snapshot() (gen int, installed bool, serial string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gen, s.installed, s.serial
}

// churn adds, replaces and removes certificates at 100 per second while
// in-process clients run full handshakes against both stable names and the
// churned ones, and counts failures for installed names and stale
// certificates served after a replacement returned.
func churn(c *runConfig, nd *node, ca *ca, res *results) error {
	const names, rate = 300, 100
	stamp := time.Now().Unix() % 100000
	state := make([]*churnName, names)
	nameOf := func(i int) string { return fmt.Sprintf("churn%05d-%04d.example.test", stamp, i) }
	ctx := context.Background()
	for i := range state {
		state[i] = &churnName{}
		if i%3 == 2 {
			continue // starts absent
		}
		b, _, err := ca.leaf(nameOf(i))
		if err != nil {
			return err
		}
		r, err := nd.admin.AddCert(ctx, b, nil)
		if err != nil {
			return err
		}
		state[i].installed, state[i].serial, state[i].id = true, r.Cert.Serial, r.Cert.ID
	}
	// Certificates for the changes, made before the clock starts.
	nOps := int(c.churnDur.Seconds() * rate)
	pems := make([][]byte, nOps)
	which := make([]int, nOps)
	rng := rand.New(rand.NewPCG(uint64(stamp), 3))
	for k := range pems {
		which[k] = rng.IntN(names)
		b, _, err := ca.leaf(nameOf(which[k]))
		if err != nil {
			return err
		}
		pems[k] = b
	}

	var hs, failInstalled, stale, absentServed, inFlight atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range c.conc {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), uint64(stamp)))
			for {
				select {
				case <-stop:
					return
				default:
				}
				if r.IntN(2) == 0 { // a stable installed name
					name := hostName(r.IntN(c.n))
					hs.Add(1)
					if leaf, err := nd.handshake(ctx, name); err != nil || leaf.VerifyHostname(name) != nil {
						if failInstalled.Add(1) <= 3 {
							log.Printf("churn: stable %s: %v", name, err)
						}
					}
					continue
				}
				i := r.IntN(names)
				g0, inst, serial := state[i].snapshot()
				leaf, err := nd.handshake(ctx, nameOf(i))
				g1, _, _ := state[i].snapshot()
				hs.Add(1)
				if g0 != g1 || g0%2 == 1 {
					inFlight.Add(1)
					continue
				}
				switch {
				case inst && err != nil:
					if failInstalled.Add(1) <= 3 {
						log.Printf("churn: installed %s: %v", nameOf(i), err)
					}
				case inst && leaf.SerialNumber.Text(16) != serial:
					if stale.Add(1) <= 3 {
						log.Printf("churn: %s served serial %s, want %s", nameOf(i), leaf.SerialNumber.Text(16), serial)
					}
				case !inst && err == nil:
					absentServed.Add(1)
				}
			}
		})
	}

	// Each tick starts one change in its own goroutine, so that the rate
	// holds however long a change takes under load; a name with a change
	// in flight is skipped for another.
	var latMu sync.Mutex // guards the three latency lists
	var addLat, replLat, rmLat []time.Duration
	var opErr atomic.Pointer[error]
	var ops sync.WaitGroup
	busy := make([]atomic.Bool, names)
	tick := time.NewTicker(time.Second / rate)
	start := time.Now()
	for k := 0; k < nOps && opErr.Load() == nil; k++ {
		<-tick.C
		i := which[k]
		for busy[i].Load() {
			i = (i + 1) % names
		}
		busy[i].Store(true)
		pem := pems[k]
		remove := k%2 == 0
		ops.Go(func() {
			defer busy[i].Store(false)
			s := state[i]
			s.mu.Lock()
			s.gen++
			inst, id := s.installed, s.id
			s.mu.Unlock()
			t0 := time.Now()
			var err error
			if inst && remove {
				err = nd.admin.RemoveCert(ctx, id)
				d := time.Since(t0)
				s.mu.Lock()
				if err == nil {
					s.installed, s.serial, s.id = false, "", ""
				}
				latMu.Lock()
				rmLat = append(rmLat, d)
				latMu.Unlock()
			} else {
				var r admin.CertResponse
				// The certificate was made for the name drawn; reissue if another was taken.
				if i != which[k] {
					pem, _, err = ca.leaf(nameOf(i))
				}
				if err == nil {
					r, err = nd.admin.AddCert(ctx, pem, nil)
				}
				d := time.Since(t0)
				s.mu.Lock()
				if err == nil {
					s.installed, s.serial, s.id = true, r.Cert.Serial, r.Cert.ID
				}
				latMu.Lock()
				if inst {
					replLat = append(replLat, d)
				} else {
					addLat = append(addLat, d)
				}
				latMu.Unlock()
			}
			s.gen++
			s.mu.Unlock()
			if err != nil {
				opErr.CompareAndSwap(nil, &err)
			}
		})
	}
	ops.Wait()
	elapsed := time.Since(start)
	tick.Stop()
	close(stop)
	wg.Wait()
	if e := opErr.Load(); e != nil {
		return fmt.Errorf("churn: %w", *e)
	}
	done := len(addLat) + len(replLat) + len(rmLat)
	res.add("churn: changes", fmt.Sprintf("%d in %s (%.0f/s): %d adds, %d replaces, %d removes", done, elapsed.Round(time.Second), float64(done)/elapsed.Seconds(), len(addLat), len(replLat), len(rmLat)), "100/s for ~30 s", ptr(float64(done)/elapsed.Seconds() >= 95))
	res.add("  change latency p99: add / replace / remove", ms(pct(addLat, .99))+" / "+ms(pct(replLat, .99))+" / "+ms(pct(rmLat, .99)), "", nil)
	res.add("  handshakes during churn", fmt.Sprintf("%d (%.0f/s; %d raced a change of their name)", hs.Load(), float64(hs.Load())/elapsed.Seconds(), inFlight.Load()), "", nil)
	res.add("  failed handshakes for installed names", fmt.Sprint(failInstalled.Load()), "0", ptr(failInstalled.Load() == 0))
	res.add("  stale certificate after replace returned", fmt.Sprint(stale.Load()), "0", ptr(stale.Load() == 0))
	res.add("  served after remove returned", fmt.Sprint(absentServed.Load()), "0", ptr(absentServed.Load() == 0))
	return nil
}
