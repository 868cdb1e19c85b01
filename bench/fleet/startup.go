package main

import (
	"context"
	"fmt"
	"log"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gatehouse/bench/internal/proc"
)

// runStartup is the start-up mode (-from-bolt): etcd is filled from an
// existing bolt data dir (a million certificates take minutes to issue, so
// they are issued once, offline, into bolt), then a node with an empty data
// dir (cold: no local index snapshot or bundle cache) and the same node
// restarted (warm) are timed from process start to the first successful
// handshake of a random installed name.
func runStartup(c *config) error {
	ctx := context.Background()
	c.logLevel = "info"
	out, report := newReport()
	etcdDir := filepath.Join(c.work, "etcd")
	hostsFile := filepath.Join(c.work, "hosts.txt")
	_, statErr := os.Stat(hostsFile)
	fill := !c.reuse || statErr != nil
	if fill {
		os.RemoveAll(etcdDir)
		os.Remove(hostsFile)
	}
	kek, err := os.ReadFile(filepath.Join(c.fromBolt, "kek"))
	if err != nil {
		return fmt.Errorf("reading the bolt data dir's kek: %w", err)
	}
	if err := os.WriteFile(filepath.Join(c.work, "kek"), kek, 0o600); err != nil {
		return err
	}
	backend := httptestServer()
	defer backend.Close()
	cl, err := openCluster(ctx, etcdDir, 60*time.Second)
	if err != nil {
		return err
	}
	defer cl.Close()
	st := cl.store
	if fill {
		keys, took, err := fillFromBolt(ctx, c.fromBolt, st, c.importers, hostsFile)
		if err != nil {
			return fmt.Errorf("filling etcd from %s: %w", c.fromBolt, err)
		}
		report("fill etcd from %s: %d keys in %s (%.0f keys/s)", c.fromBolt, keys, took.Round(time.Second), float64(keys)/took.Seconds())
	}
	hosts, err := readHosts(hostsFile)
	if err != nil {
		return err
	}
	u, _ := st.Usage(ctx)
	report("etcd: 3 embedded members, %d hostnames, db %.0f MiB (quota %.0f GiB); gatehouse %s",
		len(hosts), float64(u.Bytes)/(1<<20), float64(u.QuotaBytes)/(1<<30), c.gatehouse)
	st.Close()

	etcdYAML := cl.storeYAML()
	for i := range c.repeat {
		name := fmt.Sprintf("node-start%d", i+1)
		os.RemoveAll(filepath.Join(c.work, name))
		for _, kind := range []string{"cold (empty data dir)", "warm (restart: index snapshot and bundle cache)"} {
			n, err := startNode(c, name, etcdYAML, backend.addr, false)
			if err != nil {
				return err
			}
			sni := hosts[rand.IntN(len(hosts))]
			d, err := n.waitServing(sni, 5*time.Minute)
			if err != nil {
				n.stop()
				return err
			}
			rss := float64(proc.Status(n.pid(), "VmRSS:")) / (1 << 20)
			report("%s %s: start to first handshake (%s) %s, RSS %.0f MiB", name, kind, sni, d.Round(time.Millisecond), rss)
			n.stop()
			for line := range strings.Lines(readFileString(filepath.Join(n.dir, "log.txt"))) {
				if strings.Contains(line, "certificate index") || strings.Contains(line, "unreachable") {
					log.Printf("  %s: %s", name, strings.TrimSpace(line))
				}
			}
		}
	}
	return os.WriteFile(filepath.Join(c.work, "results.txt"), []byte(out.String()), 0o644)
}
