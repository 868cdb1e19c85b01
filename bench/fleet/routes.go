package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"slices"
	"time"

	"gatehouse/internal/admin"
	"gatehouse/internal/routes"
	"gatehouse/internal/store"
)

// routedBody is what the member of the "routed" pool answers.
const routedBody = "routed"

// routedPoolYAML is the pool that dynamic routes point at in the
// propagation measurement, or "" when c has no member for it.
func routedPoolYAML(c *config) string {
	if c.routedAddr == "" {
		return ""
	}
	return fmt.Sprintf("  - name: routed\n    members: [{address: %q}]\n", c.routedAddr)
}

// routedServer is the member of the "routed" pool.
func routedServer() *origin {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, routedBody) })}
	go srv.Serve(l)
	return &origin{addr: l.Addr().String(), srv: srv}
}

// edgeClient sends requests to a node's HTTPS listener over keep-alive
// connections, with the URL's host as SNI and Host.
func edgeClient(addr string) *http.Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, network, addr)
		},
		TLSClientConfig:     &tls.Config{InsecureSkipVerify: true},
		MaxIdleConnsPerHost: 2,
	}
	return &http.Client{Transport: tr, Timeout: 2 * time.Second}
}

func fetch(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// routePropagation adds c.adds dynamic routes through the nodes in turn,
// each for a host that has a certificate and is routed to the "origin"
// pool by the catch-all route, and times how long until every node sends
// requests for it to the "routed" pool (HTTPS with that SNI and Host, on
// keep-alive connections, polled every millisecond). The routes are
// removed afterwards.
func routePropagation(ctx context.Context, c *config, nodes []*node, report func(string, ...any)) error {
	adds := min(c.adds, c.n)
	clients := make([]*http.Client, len(nodes))
	for j, n := range nodes {
		clients[j] = edgeClient(n.https)
		defer clients[j].CloseIdleConnections()
	}
	var all, others []time.Duration
	var ids []string
	for i := range adds {
		via := nodes[i%len(nodes)]
		name := host(i)
		url := "https://" + name + "/"
		for j := range nodes {
			if body, err := fetch(clients[j], url); err != nil || body == routedBody {
				return fmt.Errorf("%s on %s before the route: %q %v", name, nodes[j].name, body, err)
			}
		}
		t0 := time.Now()
		r, err := via.client.AddRoute(ctx, admin.RouteRequest{Host: name, Pool: "routed"})
		if err != nil {
			return fmt.Errorf("adding a route for %s via %s: %w", name, via.name, err)
		}
		ids = append(ids, r.ID)
		lat := untilEach(len(nodes), t0, func(j int) bool {
			body, err := fetch(clients[j], url)
			return err == nil && body == routedBody
		})
		all = append(all, slices.Max(lat))
		for j := range nodes {
			if j != i%len(nodes) {
				others = append(others, lat[j])
			}
		}
	}
	report("route propagation of %d additions (admin call start to routed by HTTPS request): all three nodes p50 %s p99 %s max %s; other nodes p50 %s p99 %s",
		adds, pct(all, .5).Round(100*time.Microsecond), pct(all, .99).Round(100*time.Microsecond), slices.Max(all).Round(100*time.Microsecond),
		pct(others, .5).Round(100*time.Microsecond), pct(others, .99).Round(100*time.Microsecond))
	for i, id := range ids {
		if err := nodes[i%len(nodes)].client.RemoveRoute(ctx, id); err != nil {
			return fmt.Errorf("removing route %s: %w", id, err)
		}
	}
	return nil
}

// preloadRoutes stores k dynamic routes (for hosts that no request uses)
// straight into st, in transactions of 64, so that each measured route
// change makes every node rebuild a table of that size.
func preloadRoutes(ctx context.Context, st store.Store, k int, report func(string, ...any)) error {
	if k <= 0 {
		return nil
	}
	start := time.Now()
	now := time.Now().UTC()
	var ops []store.Op
	flush := func() error {
		if len(ops) == 0 {
			return nil
		}
		_, err := st.Txn(ctx, nil, ops)
		ops = ops[:0]
		return err
	}
	for i := range k {
		h := fmt.Sprintf("pre%07d.fleet.bench", i)
		r := routes.Route{ID: routes.ID(h, "/"), Host: h, PathPrefix: "/", Pool: "routed", CreatedAt: now, UpdatedAt: now}
		v, err := json.Marshal(r)
		if err != nil {
			return err
		}
		ops = append(ops, store.Put(routes.Prefix+r.ID, v))
		if len(ops) == 64 {
			if err := flush(); err != nil {
				return fmt.Errorf("storing routes: %w", err)
			}
		}
	}
	if err := flush(); err != nil {
		return fmt.Errorf("storing routes: %w", err)
	}
	report("dynamic routes stored before the nodes start: %d in %s", k, time.Since(start).Round(time.Millisecond))
	return nil
}
