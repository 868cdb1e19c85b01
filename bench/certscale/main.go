// Command certscale measures Gatehouse with many installed certificates:
// generation, bulk import, start-up, memory, flat handshake cost, and live
// changes under load. See run.sh for the full run and bench/README.md
// ("Certificate scale") for results.
//
// Usage:
//
//	certscale gen -work DIR -n N -wild W
//	certscale run -work DIR -n N -wild W -gatehouse BIN -hsload BIN -backend BIN
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"time"
)

func main() {
	log.SetFlags(log.Ltime)
	log.SetPrefix("certscale: ")
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: certscale gen|run [flags]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	var cfg runConfig
	fs.StringVar(&cfg.work, "work", "/tmp/certscale", "work directory (certificates, data directories, logs)")
	fs.IntVar(&cfg.n, "n", 1000000, "installed exact-name certificates")
	fs.IntVar(&cfg.wild, "wild", 10000, "installed wildcard certificates")
	fs.StringVar(&cfg.gatehouse, "gatehouse", "", "gatehouse binary")
	fs.StringVar(&cfg.hsload, "hsload", "", "hsload binary (shared bench)")
	fs.StringVar(&cfg.backend, "backend", "", "backend binary (shared bench)")
	fs.StringVar(&cfg.phases, "phases", "all", "comma-separated phases: import,online,startup,memory,flat,live,churn")
	fs.StringVar(&cfg.serverCPU, "server-cpu", "0", "CPUs for the server (taskset -c)")
	fs.StringVar(&cfg.loadCPU, "load-cpu", "1", "CPUs for the load client and backend (taskset -c)")
	fs.DurationVar(&cfg.loadDur, "d", 15*time.Second, "duration of each handshake load")
	fs.IntVar(&cfg.conc, "c", 16, "handshake load concurrency")
	fs.IntVar(&cfg.touch, "touch", 100000, "distinct names touched for the memory phase")
	fs.DurationVar(&cfg.churnDur, "churn", 30*time.Second, "duration of the churn phase")
	fs.Parse(os.Args[2:])
	var err error
	switch os.Args[1] {
	case "gen":
		start := time.Now()
		err = generate(cfg.work, cfg.n, cfg.wild, func(done, total int) {
			log.Printf("gen: %d/%d (%.0f/s)", done, total, float64(done)/time.Since(start).Seconds())
		})
		if err == nil {
			log.Printf("gen: %d bundles in %s", cfg.n+cfg.wild, time.Since(start).Round(time.Millisecond))
		}
	case "run":
		err = run(&cfg)
	default:
		err = fmt.Errorf("unknown command %q: want gen or run", os.Args[1])
	}
	if err != nil {
		log.Fatal(err)
	}
}
