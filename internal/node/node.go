// Package node builds one Gatehouse process from its configuration: the
// store, certificates, proxy, status portal, admin API and their listeners,
// and runs, reloads, upgrades and shuts it down. cmd/gatehouse maps its
// flags to Options.
package node

import (
	"log/slog"
	"time"

	"gatehouse/internal/acme"
	"gatehouse/internal/capacity"
	"gatehouse/internal/certs"
	"gatehouse/internal/config"
	"gatehouse/internal/hostnames"
	"gatehouse/internal/proxy"
	"gatehouse/internal/store"
)

// Options are how a node is built beside its configuration.
type Options struct {
	Logger *slog.Logger
	// Reload, if not nil, re-reads the configuration on SIGHUP or the
	// admin API's reload.
	Reload func() (*config.Config, error)
	// NewStore starts with a new, empty store although the data directory
	// shows the old one held data (serve --new-store).
	NewStore bool
	// Upgrade, if not nil, makes the node take part in binary upgrades
	// (SIGUSR2 or the admin API); nil: none (a node in a test or the demo).
	Upgrade *UpgradeOptions
}

// UpgradeOptions are a node's binary-upgrade settings.
type UpgradeOptions struct {
	// PIDFile, if set, names the serving process; an upgrade replaces it
	// with the new process's.
	PIDFile string
	// Timeout is how long a new binary has to become ready.
	Timeout time.Duration
}

// Addr is the bound address of listener name ("https", "http", "status",
// "admin"), or "" when it is not configured.
func (n *Node) Addr(name string) string { return n.srv.Addr(name) }

// Connections is listener name's open connections and their limit.
func (n *Node) Connections(name string) (open, limit int64) { return n.srv.Connections(name) }

// Certs is the node's certificate manager.
func (n *Node) Certs() *certs.Manager { return n.certs }

// Store is the node's dynamic-state store.
func (n *Node) Store() store.Store { return n.store }

// Hostnames is the node's customer-hostname manager.
func (n *Node) Hostnames() *hostnames.Manager { return n.hostnames }

// ACME is the node's certificate issuer; nil without an acme: section.
func (n *Node) ACME() *acme.Manager { return n.acme }

// Capacity is the node's registry of finite resources.
func (n *Node) Capacity() *capacity.Registry { return n.capacity }

// Proxy is the proxy serving now (a reload swaps in a new one).
func (n *Node) Proxy() *proxy.Proxy { return n.edge.Load() }
