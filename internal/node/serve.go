package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"gatehouse/internal/acme"
	"gatehouse/internal/admin"
	"gatehouse/internal/capacity"
	"gatehouse/internal/certs"
	"gatehouse/internal/config"
	"gatehouse/internal/drain"
	"gatehouse/internal/hostnames"
	"gatehouse/internal/loop"
	"gatehouse/internal/proxy"
	"gatehouse/internal/routes"
	"gatehouse/internal/server"
	"gatehouse/internal/status"
	"gatehouse/internal/store"
	"gatehouse/internal/tickets"
)

// Node is one running Gatehouse process: store, certificates, proxy, status
// portal, admin API and their listeners.
type Node struct {
	log     *slog.Logger
	cfg     atomic.Pointer[config.Config]
	store   store.Store
	certs   *certs.Manager
	tickets *tickets.Keys // TLS session ticket keys shared by the fleet
	edge    atomic.Pointer[proxy.Proxy]
	routes  *routes.Manager // dynamic routes from the store (serve_routes.go)
	// hostnames and acme: customer hostnames and their ACME certificates
	// (serve_acme.go); acme is nil without an acme: section.
	hostnames  *hostnames.Manager
	acme       *acme.Manager
	notifier   *acme.Notifier // acme.webhook: hostname state changes
	challenges *acme.Challenges
	dyn        dynRoutes
	srv        *server.Server
	reload     func() (*config.Config, error)
	capacity   *capacity.Registry
	portal     *status.Portal // the status portal (issue 4)
	stopBG     context.CancelFunc
	bgDone     chan struct{}
	// reloadMu serialises reloads.
	reloadMu sync.Mutex
	// memMu guards memLast and memFixed, the Go soft memory limit last set
	// and whether it came from limits.memory_soft_limit (limits.go).
	memMu    sync.Mutex
	memLast  int64
	memFixed bool
	up       *upgrades      // binary upgrades (upgrade.go); nil: none
	newStore bool           // serve --new-store
	drains   *drain.Manager // drained pool members (serve_drain.go)
	drainMu  drainState
	// transitions counts member health transitions (proxy.go).
	transitions *prometheus.CounterVec
}

// New wires every part from cfg and starts serving; Run serves until its
// context ends. The steps run in this order; a failed step closes what the
// earlier ones opened.
func New(ctx context.Context, cfg *config.Config, opts Options) (*Node, error) {
	n, err := newNode(cfg, opts)
	if err != nil {
		return nil, err
	}
	started := false
	defer func() {
		if !started {
			n.up.stop()
		}
	}()
	kek, err := n.prepareDataDir(cfg)
	if err != nil {
		return nil, err
	}
	if n.store, err = n.up.openStore(cfg, n.log, n.newStore); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			n.close()
		}
	}()
	if err := n.startCertificates(ctx, cfg, kek); err != nil {
		return nil, err
	}
	if err := n.startRouting(ctx, cfg, kek); err != nil {
		return nil, err
	}
	if err := n.startListeners(ctx, cfg, kek); err != nil {
		return nil, err
	}
	n.startBackground(cfg)
	ok, started = true, true
	return n, nil
}

// newNode returns a Node with its logger, configuration and binary-upgrade
// hand-over, before anything is opened.
func newNode(cfg *config.Config, opts Options) (*Node, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	n := &Node{log: log, reload: opts.Reload, newStore: opts.NewStore, transitions: newMemberTransitions()}
	if opts.Upgrade != nil {
		up, err := newUpgrades(*opts.Upgrade, log)
		if err != nil {
			return nil, err
		}
		n.up = up
	}
	n.cfg.Store(cfg)
	return n, nil
}

// prepareDataDir raises the file descriptor limit, creates and checks the
// data directory and loads (or creates) the key-encryption key.
func (n *Node) prepareDataDir(cfg *config.Config) (*certs.KEK, error) {
	soft, hard, err := server.RaiseFileLimit()
	if err != nil {
		n.log.Warn("could not raise the file descriptor limit", "soft", soft, "hard", hard, "err", err)
	} else {
		n.log.Info("file descriptor limit", "soft", soft, "hard", hard)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data_dir %s: %w", cfg.DataDir, err)
	}
	if err := server.CheckDataDir(cfg.DataDir); err != nil {
		return nil, err
	}
	kekPath := cfg.TLS.KEKFile
	if kekPath == "" {
		kekPath = filepath.Join(cfg.DataDir, "kek")
	}
	return certs.LoadOrCreateKEK(kekPath)
}

// startCertificates creates the capacity registry (it admits changes
// against the limits a reload swaps in; limits.go) and starts the
// certificate manager.
func (n *Node) startCertificates(ctx context.Context, cfg *config.Config, kek *certs.KEK) error {
	n.capacity = capacity.New(capacity.Options{Logger: n.log, Settings: capacitySettings(cfg)})
	if err := n.prepareLimits(cfg); err != nil {
		return err
	}
	n.certs = certs.NewManager(n.store, kek, certs.Options{
		Logger:          n.log,
		CacheBytes:      int64(cfg.TLS.CacheBytes),
		UnknownSNI:      cfg.TLS.UnknownSNI,
		DefaultHostname: cfg.TLS.DefaultHostname,
		Admission:       n.capacity,
		ExpiryWarning:   cfg.TLS.ExpiryWarning.D(),
		// On etcd: the local index snapshot and bundle cache.
		Dir:            filepath.Join(cfg.DataDir, "cache"),
		DiskCacheBytes: localCacheBytes(cfg),
		// On the embedded store: serve from the store file while the
		// index loads, so that start-up does not grow with the count.
		LoadInBackground: true,
	})
	start := time.Now()
	if err := n.certs.Start(ctx); err != nil {
		return err
	}
	n.log.Info("certificate manager started", "certificates", n.certs.Count(), "loading", n.certs.Loading(), "duration", time.Since(start).Round(time.Millisecond))
	return nil
}

// startRouting builds the proxy and starts what feeds it: dynamic routes,
// drains and customer hostnames.
func (n *Node) startRouting(ctx context.Context, cfg *config.Config, kek *certs.KEK) error {
	p, err := n.newProxy(cfg, nil)
	if err != nil {
		return err
	}
	n.edge.Store(p)
	if err := n.startRoutes(ctx, cfg); err != nil {
		return err
	}
	if err := n.startDrains(ctx); err != nil {
		return err
	}
	return n.startHostnames(ctx, cfg, kek)
}

// startListeners registers the node's resources and metrics, starts the
// status portal, the admin API and the session tickets, then the
// listeners. The capacity resources are registered once every part is up,
// before the admin API.
func (n *Node) startListeners(ctx context.Context, cfg *config.Config, kek *certs.KEK) error {
	token, err := n.adminToken(cfg)
	if err != nil {
		return err
	}
	certFile, keyFile := cfg.Admin.CertFile, cfg.Admin.KeyFile
	if certFile == "" {
		certFile, keyFile = filepath.Join(cfg.DataDir, "admin.crt"), filepath.Join(cfg.DataDir, "admin.key")
	}
	adminCert, err := server.LoadOrCreateAdminCert(certFile, keyFile)
	if err != nil {
		return err
	}
	n.registerResources()
	metrics := n.newMetrics()
	// The status portal: store-backed, fed by pool health; its management
	// API sits behind the admin token.
	n.portal = status.New(cfg.Status, cfg.Pools, n.poolHealth, status.Options{Logger: n.log, Store: n.store, Node: n.up.statusNode(), Secrets: kek,
		Drainer: maintDrainer{n}})
	if err := n.portal.Start(ctx); err != nil {
		return err
	}
	audit := admin.NewAudit(n.store, admin.AuditOptions{Logger: n.log})
	n.capacity.Register("audit_records", "records", "built in: 100,000 records, 90 days", false, audit.Probe)
	adminAPI, err := admin.NewServer(admin.Options{
		Logger:     n.log,
		Token:      token,
		Certs:      n.certs,
		Routes:     n.routes,
		Hostnames:  n.hostnames,
		CertSource: n.hostnames.CertSource,
		Pools:      n.adminPools,
		Reload:     func(ctx context.Context) error { return n.doReload() },
		Upgrade:    func(ctx context.Context) error { return n.Upgrade() },
		Limits:     n.capacity.Snapshot,
		Metrics:    promhttp.HandlerFor(metrics, promhttp.HandlerOpts{}),
		Status:     n.portal.ManagementHandler(),
		Drains:     n.drains,
		Tokens:     admin.NewTokens(n.store),
		Audit:      audit,
	})
	if err != nil {
		return err
	}
	// Session ticket keys come from the store, so that a client resumes on
	// any node of a fleet.
	n.tickets = tickets.New(n.store, kek, tickets.Options{Logger: n.log, Period: cfg.TLS.SessionTicketRotation.D()})
	if err := n.tickets.Start(ctx); err != nil {
		return err
	}
	return n.serve(cfg, adminAPI, adminCert)
}

// adminToken returns admin.token, or the token of admin.token_file (by
// default in the data directory), created on first start.
func (n *Node) adminToken(cfg *config.Config) (string, error) {
	if cfg.Admin.Token != "" {
		return cfg.Admin.Token, nil
	}
	path := cfg.Admin.TokenFile
	if path == "" {
		path = filepath.Join(cfg.DataDir, "admin.token")
	}
	token, created, err := server.LoadOrCreateToken(path)
	if err != nil {
		return "", err
	}
	if created {
		n.log.Info("generated admin token", "file", path)
	}
	return token, nil
}

// newMetrics returns the registry the admin API's /metrics serves.
func (n *Node) newMetrics() *prometheus.Registry {
	metrics := prometheus.NewRegistry()
	metrics.MustRegister(capacity.NewCollector(n.capacity), expiryCollector{n.certs}, n.listenerCollector(), hostnameCollector{n},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	registerClientErrors(metrics, n)
	metrics.MustRegister(n.transitions)
	metrics.MustRegister(proxy.Collector(n.edge.Load)) // requests and upstream connections per pool
	// Response cache answers by result; its bytes are a capacity resource.
	for result, get := range map[string]func(proxy.CacheStats) uint64{
		"hit":         func(s proxy.CacheStats) uint64 { return s.Hits },
		"miss":        func(s proxy.CacheStats) uint64 { return s.Misses },
		"revalidated": func(s proxy.CacheStats) uint64 { return s.Revalidated },
		"stale":       func(s proxy.CacheStats) uint64 { return s.Stale },
	} {
		metrics.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "gatehouse_response_cache_answers_total",
			Help:        "Answers of caching routes: hit (from the cache), miss (forwarded), revalidated (a member's 304), stale (a stale response in place of an error).",
			ConstLabels: prometheus.Labels{"result": result},
		}, func() float64 { return float64(get(n.edge.Load().CacheStats())) }))
	}
	return metrics
}

// serve starts the public, status, admin and plain HTTP listeners and
// tells the portal and the ACME notifier their addresses (webhooks to the
// node's own listeners are refused).
func (n *Node) serve(cfg *config.Config, adminAPI http.Handler, adminCert tls.Certificate) error {
	minVer := uint16(tls.VersionTLS12)
	if cfg.TLS.MinVersion == "1.3" {
		minVer = tls.VersionTLS13
	}
	publicTLS := n.tickets.TLSConfig(n.acmeTLS(n.certs.TLSConfig(&tls.Config{MinVersion: minVer, NextProtos: []string{"h2", "http/1.1"}})))
	n.srv = server.New(cfg, server.Options{
		Logger:    n.log,
		PublicTLS: publicTLS,
		Edge:      http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { n.edge.Load().ServeHTTP(w, r) }),
		Status:    n.portal,
		AdminTLS:  &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{adminCert}},
		Admin:     adminAPI,
		Listen:    n.up.listen(),
		PlainHTTP: n.acmeHTTP(),
	})
	if err := n.srv.Start(); err != nil {
		return err
	}
	own := map[string]string{}
	for _, name := range []string{"https", "http", "status", "admin"} {
		if a := n.srv.Addr(name); a != "" {
			own[name] = a
		}
	}
	n.portal.SetListeners(own)
	if n.notifier != nil {
		n.notifier.SetListeners(own)
	}
	return nil
}

// startBackground starts the node's background work, stopped by close:
// capacity checks, memory tuning, ACME, and the fleet-wide jobs one node
// runs at a time.
func (n *Node) startBackground(cfg *config.Config) {
	bg, cancel := context.WithCancel(context.Background())
	n.stopBG = cancel
	n.bgDone = make(chan struct{})
	log := n.log
	go func() {
		defer close(n.bgDone)
		var wg sync.WaitGroup
		wg.Go(func() { n.capacity.Run(bg) }) // every limits.check_interval
		wg.Go(func() { n.tuneMemory(bg, 30*time.Second) })
		wg.Go(func() { n.runACME(bg) })
		wg.Go(func() {
			runFleetOnce(bg, n.store, "sweep-chains", log, func(ctx context.Context) { n.sweepChains(ctx, time.Hour) })
		})
		wg.Go(func() { runFleetOnce(bg, n.store, "session-tickets", log, n.tickets.RunRotation) })
		// One node decides the status portal's component states, history,
		// drafts, maintenance and webhooks for the fleet.
		wg.Go(func() { runFleetOnce(bg, n.store, "status", log, n.portal.Lead) })
		if compact := storeCompaction(n.store, cfg); compact != nil {
			wg.Go(func() { runFleetOnce(bg, n.store, "compaction", log, compact) })
		}
		wg.Wait()
	}()
}

// registerResources declares every finite resource of the node.
func (n *Node) registerResources() {
	n.registerCacheResources()
	n.registerSubscribeResources()
	n.registerListenerResources()
	n.registerACMEResources()
	n.registerProcessResources()
	n.registerStoreResources()
	n.registerBackendResources()
	n.registerPoolCapacity()
}

// registerCacheResources declares certificates, routes, the certificate
// and response caches, the local bundle cache and HTTPS connections.
func (n *Node) registerCacheResources() {
	cfg := n.cfg.Load()
	r := n.capacity
	// The limits of certificates, routes and store come from the
	// registry's settings (capacitySettings); the probes give usage.
	r.Register(capacity.Certificates, "count", "limits.max_certificates", true, func() (int64, int64) {
		return n.certs.Count(), 0
	})
	r.Register(capacity.Routes, "count", "limits.max_routes", true, func() (int64, int64) {
		return n.routes.Count(), 0
	})
	r.Register("certificate_cache", "bytes", "tls.cache_bytes", false, func() (int64, int64) {
		b, l, _, _, _ := n.certs.CacheStats()
		return b, l
	})
	// 0 of 0 until a route enables caching.
	r.Register("response_cache", "bytes", "response_cache.max_bytes", false, func() (int64, int64) {
		s := n.edge.Load().CacheStats()
		return s.Bytes, s.Limit
	})
	if _, _, ok := n.certs.LocalCacheStats(); ok {
		r.Register("local_bundle_cache", "bytes", "store.etcd.local_cache_bytes", false, func() (int64, int64) {
			b, l, _ := n.certs.LocalCacheStats()
			return b, l
		})
	}
	r.Register("https_connections", "count", "listeners.https.max_connections", false, func() (int64, int64) {
		if n.srv == nil {
			return 0, int64(cfg.Listeners.HTTPS.MaxConnections)
		}
		return n.srv.Connections("https")
	})
}

// registerSubscribeResources declares the public subscribe form's
// rate-limit tables (status.email).
func (n *Node) registerSubscribeResources() {
	r := n.capacity
	r.Register("status_subscribe_clients", "count", "status.email.per_ip_per_hour", false, func() (int64, int64) {
		if n.portal == nil {
			return 0, 0
		}
		ips, _, limit := n.portal.SubscribeLimits()
		return ips, limit
	})
	r.Register("status_subscribe_addresses", "count", "status.email.per_address_per_hour", false, func() (int64, int64) {
		if n.portal == nil {
			return 0, 0
		}
		_, addrs, limit := n.portal.SubscribeLimits()
		return addrs, limit
	})
}

// registerProcessResources declares file descriptors, memory and the Go
// heap.
func (n *Node) registerProcessResources() {
	r := n.capacity
	r.Register("file_descriptors", "count", "RLIMIT_NOFILE", false, capacity.OpenFiles)
	r.Register("memory", "bytes", "cgroup memory.max or physical memory", false, capacity.Memory)
	r.Register("go_heap", "bytes", "Go soft memory limit (limits.memory_soft_limit)", false, func() (int64, int64) {
		u, _ := capacity.GoHeap()
		return u, goMemoryLimit()
	})
}

// registerStoreResources declares the store's own quota (the embedded
// store's is limits.store_quota; etcd's is --quota-backend-bytes, lowered
// by limits.store_quota) and, on etcd, whether it answers.
func (n *Node) registerStoreResources() {
	r := n.capacity
	r.Register(capacity.Store, "bytes", "limits.store_quota", true, func() (int64, int64) {
		sz, ok := n.store.(store.Sizer)
		if !ok {
			return -1, 0
		}
		u, err := sz.Usage(context.Background())
		if err != nil {
			return -1, 0
		}
		return u.Bytes, u.QuotaBytes
	})
	if storeBackend(n.store) == "etcd" {
		// 1 of 1 (critical) while etcd does not answer.
		r.Register("store_unreachable", "count", "store.etcd.endpoints", false, func() (int64, int64) {
			if ok, _ := storeReachable(n.store); !ok {
				return 1, 1
			}
			return 0, 1
		})
	}
}

// registerBackendResources declares the connections to pool members
// against pools[].max_conns_per_member.
func (n *Node) registerBackendResources() {
	n.capacity.Register("backend_connections", "count", "pools[].max_conns_per_member", false, func() (usage, limit int64) {
		byName := map[string]config.Pool{}
		for _, p := range n.cfg.Load().Pools {
			byName[p.Name] = p
		}
		for _, p := range n.edge.Load().Pools() {
			for _, m := range p.Members {
				usage += m.InFlight
			}
			if c := byName[p.Name].MaxConnsPerMember; c > 0 {
				limit += int64(c * len(p.Members))
			}
		}
		return usage, limit
	})
}

// poolHealth adapts the live proxy state for the status portal.
func (n *Node) poolHealth() []status.Pool {
	ps := n.edge.Load().Pools()
	out := make([]status.Pool, len(ps))
	for i, p := range ps {
		out[i].Name = p.Name
		for _, m := range p.Members {
			out[i].Members = append(out[i].Members, status.Member{Address: m.Address, Up: m.Up})
		}
		out[i].Requests, out[i].Failures = p.Requests, p.Failures
	}
	return out
}

// doReload re-reads the configuration (Options.Reload) and applies it.
func (n *Node) doReload() error {
	if n.reload == nil {
		return errors.New("this node was not started from a configuration file")
	}
	cfg, err := n.reload()
	if err != nil {
		n.log.Error("reload refused; the running configuration stays", "err", err)
		return err
	}
	return n.Reload(cfg)
}

// Reload swaps in cfg: a new proxy, limits and status components. A config
// that fails validation changes nothing. Listener addresses, the data
// directory and TLS policy need a restart; a change to them is reported.
func (n *Node) Reload(cfg *config.Config) error {
	n.reloadMu.Lock()
	defer n.reloadMu.Unlock()
	old := n.cfg.Load()
	if err := restartOnlyLimits(old, cfg); err != nil { // limits.go
		n.log.Error("reload refused; the running configuration stays", "err", err)
		return err
	}
	if err := n.prepareLimits(cfg); err != nil {
		n.log.Error("reload refused; the running configuration stays", "err", err)
		return err
	}
	prev := n.edge.Load()
	p, err := n.newProxy(cfg, prev)
	if err != nil {
		_ = n.prepareLimits(old) // back to the running store quota
		return err
	}
	// The listeners' connection limits (max_connections, queue,
	// per_client) apply now; addresses and timeouts at the next start.
	oldTLS, newTLS := old.TLS, cfg.TLS
	oldTLS.CacheBytes, newTLS.CacheBytes = 0, 0 // tls.cache_bytes changes live
	if restart := n.srv.Reconfigure(cfg.Listeners); len(restart) > 0 || cfg.DataDir != old.DataDir || oldTLS != newTLS {
		n.log.Warn("reload: listener addresses and timeouts, data_dir and tls changes take effect at the next restart", "listeners", restart)
	}
	n.swapEdge(p)
	n.reapplyDrains()
	n.cfg.Store(cfg)
	n.registerPoolCapacity()
	n.applyLimits(cfg) // every config-driven limit, live (limits.go)
	// In-flight requests hold their own reference to the old proxy's pools;
	// closing it stops only its health checks.
	prev.Close()
	n.portal.Reconfigure(cfg.Status, cfg.Pools) // status components follow the new config
	n.reconfigureNotifier(cfg)                  // serve_acme.go
	n.log.Info("configuration reloaded", "pools", len(cfg.Pools), "routes", len(cfg.Routes))
	return nil
}

// Run serves until ctx is done, reloading on SIGHUP and upgrading the
// binary on SIGUSR2 (upgrade.go), then shuts down gracefully, draining
// in-flight requests. A node replaced by a new process drains the same way.
func (n *Node) Run(ctx context.Context) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	usr2, replaced, err := n.up.start(n.store)
	if err != nil {
		n.log.Error("binary upgrade: reporting ready failed", "err", err)
		return errors.Join(err, n.shutdown())
	}
	for {
		select {
		case <-hup:
			_ = n.doReload()
		case <-usr2:
			_ = n.Upgrade()
		case <-replaced:
			n.log.Info("a new process serves: this one stops accepting")
			return n.shutdown()
		case <-ctx.Done():
			return n.shutdown()
		}
	}
}

// shutdown is Shutdown with the default drain timeout.
func (n *Node) shutdown() error { return n.Shutdown(context.Background()) }

// Shutdown stops accepting, drains in-flight requests (until ctx ends, at
// most server.ShutdownTimeout) and closes the node.
func (n *Node) Shutdown(ctx context.Context) error {
	n.up.stop()
	https, _ := n.srv.Connections("https")
	n.log.Info("shutting down: draining in-flight requests", "timeout", server.ShutdownTimeout, "https_connections", https)
	start := time.Now()
	sctx, cancel := context.WithTimeout(ctx, server.ShutdownTimeout)
	defer cancel()
	err := n.srv.Shutdown(sctx)
	n.close()
	n.log.Info("stopped", "drained_in", time.Since(start).Round(time.Millisecond))
	return err
}

func (n *Node) close() {
	if n.stopBG != nil {
		n.stopBG()
		<-n.bgDone
	}
	if n.hostnames != nil {
		n.hostnames.Close()
	}
	if n.notifier != nil {
		n.notifier.Close()
	}
	if n.routes != nil {
		n.routes.Close()
	}
	if n.drains != nil {
		n.drains.Close()
	}
	if p := n.edge.Load(); p != nil {
		p.Close()
	}
	if n.certs != nil {
		n.certs.Close()
	}
	if n.tickets != nil {
		n.tickets.Close()
	}
	if n.portal != nil { // status portal: flush history before the store closes
		if err := n.portal.Close(); err != nil {
			n.log.Warn("status portal: flushing history at close", "err", err)
		}
	}
	if n.store != nil {
		n.store.Close()
	}
}

// sweepChains deletes intermediate certificates no bundle uses any more,
// once an interval.
func (n *Node) sweepChains(ctx context.Context, interval time.Duration) {
	loop.Every(ctx, interval, func() {
		if removed, err := n.certs.SweepChains(ctx); err != nil {
			n.log.Warn("sweeping unused intermediate certificates", "err", err)
		} else if removed > 0 {
			n.log.Info("removed unused intermediate certificates", "count", removed)
		}
	})
}

// expiryCollector exposes how many certificates have expired or expire soon.
type expiryCollector struct{ m *certs.Manager }

var (
	expiringDesc = prometheus.NewDesc("gatehouse_certificates_expiring", "Installed certificate bundles expiring within the horizon (not yet expired).", []string{"within"}, nil)
	expiredDesc  = prometheus.NewDesc("gatehouse_certificates_expired", "Installed certificate bundles past their expiry.", nil, nil)
)

func (c expiryCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- expiringDesc
	ch <- expiredDesc
}

func (c expiryCollector) Collect(ch chan<- prometheus.Metric) {
	e := c.m.ExpiryCounts()
	ch <- prometheus.MustNewConstMetric(expiringDesc, prometheus.GaugeValue, float64(e.Within7Days), "7d")
	ch <- prometheus.MustNewConstMetric(expiringDesc, prometheus.GaugeValue, float64(e.Within30Days), "30d")
	ch <- prometheus.MustNewConstMetric(expiredDesc, prometheus.GaugeValue, float64(e.Expired))
}

// memorySoftLimit is the automatic Go soft memory limit: room for the
// decoded-certificate cache, the hostname index (about 400 bytes per
// installed certificate, with headroom) and a fixed base.
func memorySoftLimit(cacheBytes, certificates int64) int64 {
	return cacheBytes + 640*certificates + 320<<20
}

// tuneMemory keeps the Go runtime's soft memory limit in step with the
// number of installed certificates, unless GOMEMLIMIT or
// limits.memory_soft_limit fixes it (applyMemoryLimit; a reload applies a
// changed limits.memory_soft_limit at once).
func (n *Node) tuneMemory(ctx context.Context, every time.Duration) {
	if os.Getenv("GOMEMLIMIT") != "" {
		n.log.Info("Go memory soft limit from GOMEMLIMIT", "bytes", debug.SetMemoryLimit(-1))
		return
	}
	if n.cfg.Load().Limits.MemorySoftLimit <= 0 {
		// The automatic limit follows Count, final once the index is
		// loaded (see certs.Options.LoadInBackground).
		select {
		case <-n.certs.Loaded():
		case <-ctx.Done():
			return
		}
	}
	n.applyMemoryLimit()
	loop.Every(ctx, every, n.applyMemoryLimit)
}
