// Command statusmail measures the status portal's email notifications:
// N confirmed subscribers in an embedded (bbolt) store, one incident
// published, and the time until a local SMTP server (a child process:
// smtptest with STARTTLS) has accepted every message; with the CPU
// seconds and peak heap of the sending process and the store bytes per
// subscriber.
//
//	go run ./bench/statusmail -n 100000 -rate 1000 [-connections 4]
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"gatehouse/internal/config"
	"gatehouse/internal/mailer/smtptest"
	"gatehouse/internal/status"
	"gatehouse/internal/store"
	"gatehouse/internal/store/bolt"
)

func main() {
	n := flag.Int("n", 100000, "confirmed subscribers")
	rate := flag.Float64("rate", 1000, "status.email.rate_per_second")
	conns := flag.Int("connections", 0, "status.email.smtp.connections (0: the default)")
	handover := flag.Int("handover-at", 0, "stop the leader once this many messages were recorded as sent, and let a second portal on the same store take over (0: never)")
	child := flag.Bool("smtp-child", false, "internal: run the SMTP server and report when n messages arrived")
	flag.Parse()
	if *child {
		runSMTP(*n)
		return
	}
	dir, err := os.MkdirTemp("", "statusmail")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	// The SMTP server runs in its own process so that its CPU is not ours.
	cmd := exec.Command(os.Args[0], "-smtp-child", "-n", strconv.Itoa(*n))
	cmd.Dir = dir
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		log.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := bufio.NewScanner(out)
	lines.Scan()
	port, _ := strconv.Atoi(strings.TrimSpace(lines.Text())) // then the CA is in dir/ca.pem

	st, err := bolt.Open(filepath.Join(dir, "status.db"), bolt.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	cfg := config.Status{Title: "Bench", URL: "https://status.example.com/",
		Components: []config.Component{{Name: "Web", Region: "EU01", Pools: []string{"p"}}, {Name: "API", Region: "EU01", Pools: []string{"p"}}},
		Email: &config.StatusEmail{SMTP: config.SMTP{Host: "127.0.0.1", Port: port, CAFile: filepath.Join(dir, "ca.pem"), Connections: *conns},
			From: "status@example.com", RatePerSecond: *rate}}
	p := status.New(cfg, nil, nil, status.Options{Store: st, Interval: time.Hour})
	ctx := context.Background()
	if err := p.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer p.Close()
	before, _ := st.Usage(ctx)
	fill := time.Now()
	const batch = 1000
	for i := 0; i < *n; i += batch {
		var reqs []status.EmailSubscriberRequest
		for j := i; j < min(i+batch, *n); j++ {
			reqs = append(reqs, status.EmailSubscriberRequest{Email: fmt.Sprintf("reader%06d@uni-%d.example.org", j, j%500)})
		}
		if err := p.AddEmailSubscribers(ctx, reqs); err != nil {
			log.Fatal(err)
		}
	}
	after, _ := st.Usage(ctx)
	log.Printf("%d subscribers written in %s", *n, time.Since(fill).Round(time.Millisecond))
	runtime.GC()

	lctx, stopLead := context.WithCancel(ctx)
	leadDone := make(chan struct{})
	go func() { defer close(leadDone); p.Lead(lctx) }()
	for !p.Leading() {
		time.Sleep(10 * time.Millisecond)
	}
	var ru0 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	var peak uint64
	stopSample := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
			select {
			case <-stopSample:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	start := time.Now()
	if _, err := p.OpenIncident(ctx, status.IncidentRequest{Name: "Outage of the web app", Body: "We are **investigating**."}); err != nil {
		log.Fatal(err)
	}
	go func() {
		for range time.Tick(10 * time.Second) {
			log.Printf("%s: sending", time.Since(start).Round(time.Second))
		}
	}()
	if *handover > 0 {
		go func() {
			for sentSoFar(ctx, st) < *handover {
				time.Sleep(20 * time.Millisecond)
			}
			stopLead()
			<-leadDone
			log.Printf("%s: leader stopped after %d messages recorded; a second portal takes over", time.Since(start).Round(time.Millisecond), sentSoFar(ctx, st))
			p2 := status.New(cfg, nil, nil, status.Options{Store: st, Interval: time.Hour})
			if err := p2.Start(ctx); err != nil {
				log.Fatal(err)
			}
			p2.Lead(ctx)
		}()
	}
	lines.Scan() // "done": the server has accepted n messages
	elapsed := time.Since(start)
	var ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	close(stopSample)
	<-sampled
	if *handover == 0 {
		stopLead()
		<-leadDone
	}
	cpu := func(r syscall.Rusage) float64 {
		return float64(r.Utime.Sec+r.Stime.Sec) + float64(r.Utime.Usec+r.Stime.Usec)/1e6
	}
	fmt.Printf("subscribers\t%d\n", *n)
	fmt.Printf("rate_per_second\t%g\n", *rate)
	fmt.Printf("connections\t%d\n", cfg.Email.WithDefaults().SMTP.Connections)
	fmt.Printf("all accepted in\t%s\n", elapsed.Round(time.Millisecond))
	fmt.Printf("messages/s\t%.0f\n", float64(*n)/elapsed.Seconds())
	fmt.Printf("leader CPU s\t%.1f\n", cpu(ru1)-cpu(ru0))
	fmt.Printf("peak heap in use MiB\t%.1f\n", float64(peak)/(1<<20))
	fmt.Printf("store bytes/subscriber\t%d\n", (after.Bytes-before.Bytes)/int64(*n))
	fmt.Printf("server says\t%s\n", lines.Text())
}

// sentSoFar reads how many messages the notification's progress record
// counts as accepted.
func sentSoFar(ctx context.Context, st store.Store) int {
	kvs, _, err := st.List(ctx, status.MailKeyPrefix+"events/", "", 1)
	if err != nil || len(kvs) == 0 {
		return 0
	}
	var ev struct {
		Sent int `json:"sent"`
	}
	json.Unmarshal(kvs[0].Value, &ev)
	return ev.Sent
}

// runSMTP serves until n messages were accepted, then says so.
func runSMTP(n int) {
	srv, err := smtptest.Start(smtptest.Options{Discard: true})
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile("ca.pem", srv.CAPEM, 0o600); err != nil {
		log.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[string]int{}
	all := make(chan struct{})
	srv.OnAccept(func(m smtptest.Message) {
		mu.Lock()
		defer mu.Unlock()
		seen[strings.Join(m.To, ",")]++
		if len(seen) == n {
			close(all)
		}
	})
	fmt.Println(srv.Port())
	<-all
	time.Sleep(500 * time.Millisecond) // a duplicate would show in the count
	mu.Lock()
	fmt.Printf("done: %d messages accepted for %d recipients (%d duplicates)\n", srv.Count(), len(seen), srv.Count()-int64(len(seen)))
	mu.Unlock()
	select {}
}
