package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gatehouse/internal/config"
	"gatehouse/internal/store"
	"gatehouse/internal/store/bolt"
	"gatehouse/internal/store/etcd"
)

// openStore opens the node's dynamic-state store: the bbolt file in the
// data directory, or the etcd cluster of store.etcd when it is configured.
// A bbolt file that is damaged, or missing or empty where the data
// directory shows it held data, is refused with the recovery steps, unless
// newStore (serve --new-store) asks to start anew.
func openStore(cfg *config.Config, log *slog.Logger, newStore bool) (store.Store, error) {
	if cfg.Store.Etcd == nil {
		path := filepath.Join(cfg.DataDir, "gatehouse.db")
		st, err := bolt.Open(path, bolt.Options{
			Logger: log, QuotaBytes: int64(cfg.Limits.StoreQuota),
			Marker:   path + ".marker",
			Hints:    []string{filepath.Join(cfg.DataDir, "kek"), filepath.Join(cfg.DataDir, "admin.token")},
			NewStore: newStore,
		})
		if errors.Is(err, bolt.ErrCorrupt) || errors.Is(err, bolt.ErrDataLost) {
			return nil, fmt.Errorf("refusing to start: %w\n"+
				"Every certificate and dynamic route is in this file; starting with an empty store would serve none.\n"+
				"To recover: stop every gatehouse process of %s, restore gatehouse.db there from your latest backup, and start again.\n"+
				"To start anew with an empty store on purpose (certificates and routes installed again afterwards): gatehouse serve --new-store\n"+
				"(the old file is then kept as gatehouse.db.damaged-TIME)", err, cfg.DataDir)
		}
		return st, err
	}
	opts, err := etcdOptions(cfg.Store.Etcd)
	if err != nil {
		return nil, err
	}
	opts.Logger = log
	return etcd.Open(context.Background(), opts)
}

// etcdOptions reads the files that store.etcd names and returns the
// client's options.
func etcdOptions(ec *config.Etcd) (etcd.Options, error) {
	opts := etcd.Options{
		Endpoints:      ec.Endpoints,
		Prefix:         ec.Prefix,
		DialTimeout:    ec.DialTimeout.D(),
		RequestTimeout: ec.RequestTimeout.D(),
		Username:       ec.Username,
	}
	if ec.PasswordFile != "" {
		pw, err := os.ReadFile(ec.PasswordFile)
		if err != nil {
			return opts, fmt.Errorf("store.etcd.password_file: %w", err)
		}
		opts.Password = strings.TrimSpace(string(pw))
		if opts.Password == "" {
			return opts, fmt.Errorf("store.etcd.password_file: %s is empty", ec.PasswordFile)
		}
	}
	if ec.CAFile == "" && ec.CertFile == "" {
		return opts, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if ec.CAFile != "" {
		pem, err := os.ReadFile(ec.CAFile)
		if err != nil {
			return opts, fmt.Errorf("store.etcd.ca_file: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return opts, fmt.Errorf("store.etcd.ca_file: %s holds no PEM certificate", ec.CAFile)
		}
	}
	if ec.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(ec.CertFile, ec.KeyFile)
		if err != nil {
			return opts, fmt.Errorf("store.etcd.cert_file and key_file: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	opts.TLS = tc
	return opts, nil
}

// storeBackend names the backend of st for logs and reports.
func storeBackend(st store.Store) string {
	if _, ok := st.(*etcd.Store); ok {
		return "etcd"
	}
	return "bolt"
}

// storeReachable reports whether st answers; a local store always does.
func storeReachable(st store.Store) (ok bool, err error) {
	e, isEtcd := st.(*etcd.Store)
	if !isEtcd {
		return true, nil
	}
	if h := e.Health(); !h.Reachable {
		return false, errors.New(h.Err)
	}
	return true, nil
}

// elector runs work on one node of a fleet at a time; *etcd.Store is one.
type elector interface {
	RunElected(ctx context.Context, name, id string, ttl time.Duration, fn func(ctx context.Context)) error
}

// runFleetOnce runs fn until ctx is done: under a fleet-wide election
// when st is shared by a fleet (so that a dead node's work is taken over
// within etcd.DefaultElectionTTL), directly on a single node's store.
func runFleetOnce(ctx context.Context, st store.Store, name string, log *slog.Logger, fn func(ctx context.Context)) {
	el, ok := st.(elector)
	if !ok {
		fn(ctx)
		return
	}
	host, _ := os.Hostname()
	id := fmt.Sprintf("%s/%d", host, os.Getpid())
	if err := el.RunElected(ctx, name, id, etcd.DefaultElectionTTL, fn); err != nil && ctx.Err() == nil {
		log.Warn("fleet-once work stopped", "work", name, "err", err)
	}
}

// storeCompaction returns the scheduled compaction of st's history when st
// is etcd (run it fleet-once), or nil for a store that needs none.
func storeCompaction(st store.Store, cfg *config.Config) func(ctx context.Context) {
	e, ok := st.(*etcd.Store)
	if !ok {
		return nil
	}
	opts := etcd.CompactionOptions{}
	if cfg.Store.Etcd != nil {
		opts.Retention = cfg.Store.Etcd.CompactionRetention.D() // 0: etcd.DefaultRetention
	}
	return func(ctx context.Context) { e.RunCompaction(ctx, opts) }
}

// localCacheBytes is store.etcd.local_cache_bytes (0: the default).
func localCacheBytes(cfg *config.Config) int64 {
	if cfg.Store.Etcd == nil {
		return 0
	}
	return int64(cfg.Store.Etcd.LocalCacheBytes)
}
