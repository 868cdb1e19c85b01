package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"gatehouse/internal/admin"

	"gatehouse/bench/internal/proc"
)

// Loopback ports of a run, away from the proxy benchmark's.
const (
	httpsAddr   = "127.0.0.1:28443"
	adminAddr   = "127.0.0.1:28444"
	backendAddr = "127.0.0.1:28090"
)

// node is a running `gatehouse serve`.
type node struct {
	cmd       *exec.Cmd
	pid       int
	data      string
	started   time.Time
	indexAt   atomic.Int64 // ns after start when the log said "certificate index loaded"
	logDone   chan struct{}
	exited    chan struct{} // closed when the process has been waited for
	admin     *admin.Client
	tlsClient *tls.Config
}

// writeConfig writes the serve configuration for data dir dir.
func writeConfig(dir string, cacheBytes int64) (string, error) {
	cache := ""
	if cacheBytes > 0 {
		cache = fmt.Sprintf(", cache_bytes: %d", cacheBytes)
	}
	cfg := fmt.Sprintf(`data_dir: %s
listeners:
  https: {address: "%s", per_client: {allow: ["127.0.0.0/8"]}}
  admin: {address: "%s"}
tls: {unknown_sni: reject%s}
log: {level: info}
pools:
  - name: origin
    members: [{address: "%s"}]
routes:
  - {host: "*", pool: origin}
`, dir, httpsAddr, adminAddr, cache, backendAddr)
	path := filepath.Join(filepath.Dir(dir), filepath.Base(dir)+".yaml")
	return path, os.WriteFile(path, []byte(cfg), 0o644)
}

// startNode starts the server on data dir dir, pinned to cpus, and returns
// once its process runs (not once it serves).
func startNode(gatehouse, dir, cpus string, ca []byte) (*node, error) {
	cfgPath, err := writeConfig(dir, 0)
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(dir + ".log")
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	n := &node{data: dir, logDone: make(chan struct{}), tlsClient: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13, ClientSessionCache: nil}}
	n.cmd = exec.Command("taskset", "-c", cpus, gatehouse, "serve", "--config", cfgPath)
	n.cmd.Env = append(os.Environ(), "GOMAXPROCS="+strconv.Itoa(strings.Count(cpus, ",")+1))
	if extra := os.Getenv("CERTSCALE_SERVER_ENV"); extra != "" {
		n.cmd.Env = append(n.cmd.Env, strings.Fields(extra)...)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	n.cmd.Stderr = pw
	n.cmd.Stdout = pw
	n.started = time.Now()
	if err := n.cmd.Start(); err != nil {
		return nil, err
	}
	pw.Close()
	n.pid = n.cmd.Process.Pid
	n.exited = make(chan struct{})
	go func() { _ = n.cmd.Wait(); close(n.exited) }()
	go func() {
		defer close(n.logDone)
		defer logf.Close()
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if n.indexAt.Load() == 0 && strings.Contains(line, "certificate index loaded") {
				n.indexAt.Store(int64(time.Since(n.started)))
			}
			fmt.Fprintln(logf, line)
		}
	}()
	return n, nil
}

// connectAdmin makes the admin client once the node wrote its token.
func (n *node) connectAdmin() error {
	token, err := os.ReadFile(filepath.Join(n.data, "admin.token"))
	if err != nil {
		return err
	}
	ca, err := os.ReadFile(filepath.Join(n.data, "admin.crt"))
	if err != nil {
		return err
	}
	n.admin, err = admin.NewClient("https://"+adminAddr, strings.TrimSpace(string(token)), ca)
	return err
}

// handshake does one full TLS 1.3 handshake for name and returns the
// served leaf.
func (n *node) handshake(ctx context.Context, name string) (*x509.Certificate, error) {
	cfg := n.tlsClient.Clone()
	cfg.ServerName = name
	d := tls.Dialer{Config: cfg, NetDialer: &net.Dialer{Timeout: 5 * time.Second}}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", httpsAddr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	st := c.(*tls.Conn).ConnectionState()
	if len(st.PeerCertificates) == 0 {
		return nil, errors.New("no certificate")
	}
	return st.PeerCertificates[0], nil
}

// waitServing polls handshakes for name until one succeeds.
func (n *node) waitServing(name string, timeout time.Duration) (time.Duration, error) {
	deadline := time.Now().Add(timeout)
	for {
		if _, err := n.handshake(context.Background(), name); err == nil {
			d := time.Since(n.started)
			if err := n.waitAdmin(deadline); err != nil {
				return d, err
			}
			return d, nil
		} else if time.Now().After(deadline) {
			return 0, fmt.Errorf("no handshake for %s within %s: %w (log: %s.log)", name, timeout, err, n.data)
		}
		select {
		case <-n.exited:
			return 0, fmt.Errorf("server exited (log: %s.log)", n.data)
		default:
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (n *node) waitAdmin(deadline time.Time) error {
	for {
		err := n.connectAdmin()
		if err == nil {
			if _, err = n.admin.Limits(context.Background()); err == nil {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("admin API: %w", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stop ends the server with SIGTERM and waits.
func (n *node) stop() {
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.exited:
	case <-time.After(40 * time.Second):
		_ = n.cmd.Process.Kill()
		<-n.exited
	}
	<-n.logDone
}

// cpuSeconds is the server's user+system CPU time from /proc.
func (n *node) cpuSeconds() float64 { return proc.CPUSeconds(n.pid) }

// memory returns the server's RSS and PSS in bytes.
func (n *node) memory() (rss, pss int64) {
	return proc.Status(n.pid, "VmRSS:"), proc.PSS(n.pid)
}

// memorySplit returns the anonymous (heap) and file-backed (the store's
// mapped pages) parts of the RSS in bytes.
func (n *node) memorySplit() (anon, file int64) {
	return proc.Status(n.pid, "RssAnon:"), proc.Status(n.pid, "RssFile:")
}
