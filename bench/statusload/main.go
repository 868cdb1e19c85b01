// Command statusload serves a status portal of 20 components and 200
// incidents (rendered once, as the node does) on a loopback address, for
// bench/statusload/run.sh to load with wrk.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"gatehouse/internal/config"
	"gatehouse/internal/status"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:28180", "listen address (loopback)")
	components := flag.Int("components", 20, "components, 5 per region")
	incidents := flag.Int("incidents", 200, "resolved incidents in history")
	flag.Parse()

	cfg := config.Status{Title: "Status load test"}
	for i := range *components {
		cfg.Components = append(cfg.Components, config.Component{
			Name: fmt.Sprintf("Service %d", i%5), Region: fmt.Sprintf("R%02d", i/5), Pools: []string{"p"}})
	}
	health := func() []status.Pool {
		return []status.Pool{{Name: "p", Members: []status.Member{{Address: "127.0.0.1:1", Up: true}}}}
	}
	p := status.New(cfg, []config.Pool{{Name: "p"}}, health, status.Options{})
	ctx := context.Background()
	start := time.Now()
	regions := max(1, *components/5)
	for i := range *incidents {
		in, err := p.OpenIncident(ctx, status.IncidentRequest{Name: fmt.Sprintf("Incident %d", i), Body: "Investigating.",
			Components: []string{fmt.Sprintf("R%02d/Service %d", i%regions, i%5)}})
		if err != nil {
			log.Fatal(err)
		}
		if _, err := p.UpdateIncident(ctx, in.ID, status.UpdateRequest{Status: status.Resolved, Body: "Resolved."}); err != nil {
			log.Fatal(err)
		}
	}
	log.Printf("site with %d components and %d incidents built in %s", *components, *incidents, time.Since(start).Round(time.Millisecond))
	if err := p.Start(ctx); err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
		<-sig
		srv.Close()
	}()
	fmt.Println("ready", ln.Addr())
	if err := srv.Serve(ln); err != http.ErrServerClosed {
		log.Fatal(err)
	}
	p.Close()
}
