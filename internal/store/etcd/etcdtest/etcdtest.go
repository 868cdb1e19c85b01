// Package etcdtest runs a real etcd cluster in the test process (etcd's
// server/embed) on loopback ports, with members that can be stopped and
// restarted to test what happens when a quorum or the whole cluster is lost.
package etcdtest

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// startTimeout bounds how long a member may take to be ready.
const startTimeout = 20 * time.Second

// Cluster is an in-process etcd cluster. Its methods must be called from
// the test's goroutine or with external synchronisation.
type Cluster struct {
	t       testing.TB
	members []*member
}

type member struct {
	name       string
	dir        string
	clientURL  url.URL
	peerURL    url.URL
	mu         sync.Mutex
	e          *embed.Etcd // nil while stopped
	started    bool        // has run once: restarts join the existing cluster
	initialCfg string
}

// Start starts an n-member cluster (TickMs 20, ElectionMs 200) with its data
// in t.TempDir(), waits until every member is ready, and stops it when the
// test ends. Tests must close their clients before that (register their
// cleanup after calling Start).
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	c := &Cluster{t: t}
	var initial []string
	for i := range n {
		m := &member{
			name:      fmt.Sprintf("m%d", i),
			dir:       filepath.Join(t.TempDir(), fmt.Sprintf("m%d", i)),
			clientURL: url.URL{Scheme: "http", Host: freeAddr(t)},
			peerURL:   url.URL{Scheme: "http", Host: freeAddr(t)},
		}
		initial = append(initial, m.name+"="+m.peerURL.String())
		c.members = append(c.members, m)
	}
	for _, m := range c.members {
		m.initialCfg = strings.Join(initial, ",")
	}
	t.Cleanup(c.StopAll)
	c.startMembers(c.members)
	return c
}

// freeAddr returns a loopback address with a port nobody listens on.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("allocating a port: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

func (c *Cluster) config(m *member) *embed.Config {
	cfg := embed.NewConfig()
	cfg.Name = m.name
	cfg.Dir = m.dir
	cfg.ListenClientUrls = []url.URL{m.clientURL}
	cfg.AdvertiseClientUrls = []url.URL{m.clientURL}
	cfg.ListenPeerUrls = []url.URL{m.peerURL}
	cfg.AdvertisePeerUrls = []url.URL{m.peerURL}
	cfg.InitialCluster = m.initialCfg
	cfg.InitialClusterToken = "gatehouse-test"
	cfg.ClusterState = embed.ClusterStateFlagNew
	if m.started {
		cfg.ClusterState = embed.ClusterStateFlagExisting
	}
	cfg.TickMs = 20
	cfg.ElectionMs = 200
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cfg.LogLevel = "error"
	return cfg
}

// startMembers starts the given stopped members together (a restarted
// cluster needs a quorum of them before any is ready) and waits for each.
func (c *Cluster) startMembers(ms []*member) {
	c.t.Helper()
	for _, m := range ms {
		m.mu.Lock()
		if m.e != nil {
			m.mu.Unlock()
			continue
		}
		e, err := embed.StartEtcd(c.config(m))
		if err != nil {
			m.mu.Unlock()
			c.t.Fatalf("starting etcd member %s: %v", m.name, err)
		}
		m.e, m.started = e, true
		m.mu.Unlock()
	}
	deadline := time.After(startTimeout)
	for _, m := range ms {
		m.mu.Lock()
		e := m.e
		m.mu.Unlock()
		select {
		case <-e.Server.ReadyNotify():
		case err := <-e.Err():
			c.t.Fatalf("etcd member %s: %v", m.name, err)
		case <-deadline:
			c.t.Fatalf("etcd member %s not ready after %v", m.name, startTimeout)
		}
	}
}

// Endpoints returns the client URLs of every member, running or not.
func (c *Cluster) Endpoints() []string {
	out := make([]string, len(c.members))
	for i, m := range c.members {
		out[i] = m.clientURL.String()
	}
	return out
}

// Size returns the number of members.
func (c *Cluster) Size() int { return len(c.members) }

// Stop stops member i; stopping a stopped member does nothing.
func (c *Cluster) Stop(i int) { c.stop(c.members[i]) }

func (c *Cluster) stop(m *member) {
	m.mu.Lock()
	e := m.e
	m.e = nil
	m.mu.Unlock()
	if e != nil {
		e.Close()
	}
}

// StopAll stops every member: the followers in parallel, then the leader,
// which then has nobody to hand its leadership over to (stopping a leader
// or several members at once otherwise waits seconds for a handover).
func (c *Cluster) StopAll() {
	var leader *member
	var wg sync.WaitGroup
	for _, m := range c.members {
		m.mu.Lock()
		e := m.e
		m.mu.Unlock()
		if e != nil && e.Server.Leader() == e.Server.MemberID() {
			leader = m
			continue
		}
		wg.Go(func() { c.stop(m) })
	}
	wg.Wait()
	if leader != nil {
		c.stop(leader)
	}
}

// Restart starts member i again with its data, and waits until it is ready
// (which needs a quorum of running members).
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	c.startMembers([]*member{c.members[i]})
}

// RestartAll starts every stopped member and waits until all are ready.
func (c *Cluster) RestartAll() {
	c.t.Helper()
	c.startMembers(c.members)
}
