package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"gatehouse/internal/store"
	"gatehouse/internal/store/bolt"
	"gatehouse/internal/store/etcd"
)

// Bounds of the migration's transactions: well under etcd's 128 operations
// and 1.5 MiB per request.
const (
	migrateTxnOps   = 64
	migrateTxnBytes = 1 << 20
	migratePage     = 5000
)

func newStoreCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "store",
		Short: "Operate on the dynamic-state store directly (the node must be stopped for the embedded store)",
	}
	var from, to, prefix string
	var force bool
	migrate := &cobra.Command{
		Use:   "migrate --from bolt:DIR --to etcd:URL[,URL...]",
		Short: "Copy every key from one store to an empty other, then verify counts and checksums",
		Long: `Copy the whole dynamic state (tenants, hostnames, certificates, incidents)
from one store to another and verify it: the number of keys and a SHA-256
over every key and value, in key order, must match on both sides.

A store is bolt:DIR (the data directory, or the .db file itself) or
etcd:URL[,URL...] with --prefix. The destination must be empty unless
--force is given. Private keys stay sealed: every node of the fleet needs
the same key-encryption key file (tls.kek_file).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if from == "" || to == "" {
				return errors.New("both --from and --to are required")
			}
			ctx := cmd.Context()
			src, err := openStoreSpec(ctx, from, prefix, true)
			if err != nil {
				return fmt.Errorf("--from: %w", err)
			}
			defer src.Close()
			dst, err := openStoreSpec(ctx, to, prefix, false)
			if err != nil {
				return fmt.Errorf("--to: %w", err)
			}
			defer dst.Close()
			return migrateStore(ctx, src, dst, force, cmd.OutOrStdout())
		},
	}
	migrate.Flags().StringVar(&from, "from", "", "source store: bolt:DIR or etcd:URL[,URL...]")
	migrate.Flags().StringVar(&to, "to", "", "destination store: bolt:DIR or etcd:URL[,URL...]")
	migrate.Flags().StringVar(&prefix, "prefix", etcd.DefaultPrefix, "key prefix in etcd (store.etcd.prefix)")
	migrate.Flags().BoolVar(&force, "force", false, "write into a destination that already holds keys (overwriting equal keys)")
	cmd.AddCommand(migrate)
	return cmd
}

// openStoreSpec opens "bolt:DIR" or "etcd:URL,URL"; with mustExist a
// bolt file is not created.
func openStoreSpec(ctx context.Context, spec, prefix string, mustExist bool) (store.Store, error) {
	kind, arg, ok := strings.Cut(spec, ":")
	if !ok || arg == "" {
		return nil, fmt.Errorf("%q: want bolt:DIR or etcd:URL[,URL...]", spec)
	}
	switch kind {
	case "bolt":
		path := arg
		if fi, err := os.Stat(arg); err == nil && fi.IsDir() {
			path = filepath.Join(arg, "gatehouse.db")
		}
		if _, err := os.Stat(path); err != nil && (mustExist || !isDir(filepath.Dir(path))) {
			// Opening would create it: say so rather than migrate nothing.
			return nil, fmt.Errorf("%q: %w", spec, err)
		}
		return bolt.Open(path, bolt.Options{})
	case "etcd":
		eps := strings.Split(arg, ",")
		s, err := etcd.Open(ctx, etcd.Options{Endpoints: eps, Prefix: prefix, RequestTimeout: 30 * time.Second})
		if err != nil {
			return nil, err
		}
		if h := s.Health(); !h.Reachable {
			s.Close()
			return nil, fmt.Errorf("%q: etcd does not answer: %s: %w", spec, h.Err, store.ErrUnavailable)
		}
		return s, nil
	}
	return nil, fmt.Errorf("%q: unknown store kind %q (want bolt or etcd)", spec, kind)
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// storeDigest is the number of keys of a store, their bytes and a SHA-256
// over every key and value in key order.
type storeDigest struct {
	Keys  int64
	Bytes int64
	Sum   string
}

func digest(ctx context.Context, s store.Store) (storeDigest, error) {
	h := sha256.New()
	var d storeDigest
	err := eachKV(ctx, s, func(kvs []store.KV) error {
		for _, kv := range kvs {
			fmt.Fprintf(h, "%d:%s%d:", len(kv.Key), kv.Key, len(kv.Value))
			h.Write(kv.Value)
			d.Keys++
			d.Bytes += int64(len(kv.Key) + len(kv.Value))
		}
		return nil
	})
	d.Sum = hex.EncodeToString(h.Sum(nil))
	return d, err
}

// eachKV calls fn with every key of s, in pages.
func eachKV(ctx context.Context, s store.Store, fn func([]store.KV) error) error {
	after := ""
	for {
		kvs, _, err := s.List(ctx, "", after, migratePage)
		if err != nil {
			return err
		}
		if len(kvs) == 0 {
			return nil
		}
		if err := fn(kvs); err != nil {
			return err
		}
		if len(kvs) < migratePage {
			return nil
		}
		after = kvs[len(kvs)-1].Key
	}
}

// migrateStore copies every key of src to dst in bounded transactions and
// verifies the result.
func migrateStore(ctx context.Context, src, dst store.Store, force bool, out io.Writer) error {
	if !force {
		kvs, _, err := dst.List(ctx, "", "", 1)
		if err != nil {
			return fmt.Errorf("checking the destination: %w", err)
		}
		if len(kvs) > 0 {
			return fmt.Errorf("the destination already holds keys (%q, ...); migrate into an empty store or pass --force", kvs[0].Key)
		}
	}
	start := time.Now()
	var ops []store.Op
	var size, copied int
	flush := func() error {
		if len(ops) == 0 {
			return nil
		}
		if _, err := dst.Txn(ctx, nil, ops); err != nil {
			return fmt.Errorf("writing %d keys from %q: %w", len(ops), ops[0].Key, err)
		}
		copied += len(ops)
		ops, size = ops[:0], 0
		return nil
	}
	err := eachKV(ctx, src, func(kvs []store.KV) error {
		for _, kv := range kvs {
			n := len(kv.Key) + len(kv.Value) + 256
			if len(ops) >= migrateTxnOps || (len(ops) > 0 && size+n > migrateTxnBytes) {
				if err := flush(); err != nil {
					return err
				}
			}
			ops = append(ops, store.Put(kv.Key, kv.Value))
			size += n
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return fmt.Errorf("migrating (after %d keys): %w", copied, err)
	}
	fmt.Fprintf(out, "copied %d keys in %v; verifying\n", copied, time.Since(start).Round(time.Millisecond))
	ds, err := digest(ctx, src)
	if err != nil {
		return fmt.Errorf("verifying the source: %w", err)
	}
	dd, err := digest(ctx, dst)
	if err != nil {
		return fmt.Errorf("verifying the destination: %w", err)
	}
	fmt.Fprintf(out, "source:      %d keys, %d bytes, sha256 %s\n", ds.Keys, ds.Bytes, ds.Sum)
	fmt.Fprintf(out, "destination: %d keys, %d bytes, sha256 %s\n", dd.Keys, dd.Bytes, dd.Sum)
	if ds != dd {
		return errors.New("verification failed: the destination differs from the source (was either written during the migration?)")
	}
	fmt.Fprintln(out, "verified: counts and checksums match")
	return nil
}
