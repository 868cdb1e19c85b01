package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"gatehouse/internal/store"
	"gatehouse/internal/store/bolt"
)

// fillTxnOps and fillTxnBytes bound one copy transaction (etcd allows 128
// operations and 1.5 MiB per request).
const (
	fillTxnOps   = 100
	fillTxnBytes = 1 << 20
)

// fillFromBolt copies every key of the bolt store in dir into st with
// parallel transactions, and writes the hostnames it saw under
// certs/names/ to hostsFile (one a line), for picking random names later.
// It is the bench's fast path to a large etcd: `gatehouse store migrate`
// does the same sequentially and verifies a checksum afterwards.
func fillFromBolt(ctx context.Context, dir string, st store.Store, workers int, hostsFile string) (int64, time.Duration, error) {
	src, err := bolt.Open(dir+"/gatehouse.db", bolt.Options{ReadOnly: true, SkipCheck: true, ReleaseMappedEvery: -1})
	if err != nil {
		return 0, 0, err
	}
	defer src.Close()
	hf, err := os.Create(hostsFile)
	if err != nil {
		return 0, 0, err
	}
	defer hf.Close()
	hw := bufio.NewWriter(hf)

	start := time.Now()
	batches := make(chan []store.Op, 4*workers)
	var copied atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for ops := range batches {
				if firstErr.Load() != nil {
					continue
				}
				if _, err := st.Txn(ctx, nil, ops); err != nil {
					firstErr.Store(fmt.Errorf("copying %q...: %w", ops[0].Key, err))
					continue
				}
				if c := copied.Add(int64(len(ops))); c/100000 != (c-int64(len(ops)))/100000 {
					log.Printf("fill: %d keys (%.0f/s)", c, float64(c)/time.Since(start).Seconds())
				}
			}
		})
	}
	var ops []store.Op
	size := 0
	names := []byte("certs/names/")
	_, err = src.Scan(ctx, "", func(k, v []byte) error {
		if e, _ := firstErr.Load().(error); e != nil {
			return e
		}
		if rest, ok := bytes.CutPrefix(k, names); ok {
			if i := bytes.LastIndexByte(rest, '/'); i > 0 && rest[0] != '*' {
				hw.Write(rest[:i])
				hw.WriteByte('\n')
			}
		}
		if len(ops) >= fillTxnOps || (len(ops) > 0 && size+len(k)+len(v) > fillTxnBytes) {
			batches <- ops
			ops, size = nil, 0
		}
		ops = append(ops, store.Put(string(k), bytes.Clone(v)))
		size += len(k) + len(v)
		return nil
	})
	if len(ops) > 0 && err == nil {
		batches <- ops
	}
	close(batches)
	wg.Wait()
	if err != nil {
		return 0, 0, fmt.Errorf("reading %s: %w", dir, err)
	}
	if e, _ := firstErr.Load().(error); e != nil {
		return 0, 0, e
	}
	if err := hw.Flush(); err != nil {
		return 0, 0, err
	}
	return copied.Load(), time.Since(start), nil
}

// readHosts reads a hosts file written by fillFromBolt.
func readHosts(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	hosts := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(hosts) == 0 || hosts[0] == "" {
		return nil, fmt.Errorf("%s: no hostnames", path)
	}
	return hosts, nil
}
