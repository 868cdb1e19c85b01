package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"gatehouse/internal/config"
	"gatehouse/internal/server"
	"gatehouse/internal/store"
	"gatehouse/internal/store/bolt"
)

// Binary upgrades (SIGUSR2 or `gatehouse upgrade`): the running process
// starts the executable at its own path again, which inherits every
// listening socket; the old process stops accepting once the new one is
// ready, drains and exits.
//
// The embedded store's bbolt file is locked exclusively by its writer, so
// it is handed over in read-only steps:
//  1. the old process reopens it read-only (a shared lock) and refuses
//     writes with bolt.ErrReadOnly ("upgrade in progress"; 503 on the admin
//     API) while it keeps serving reads;
//  2. the new process opens it read-only too, starts and reports ready;
//  3. the old process drains and exits, releasing its lock;
//  4. the new process reopens the file read-write and accepts writes.
//
// If the new process fails (exits, or is not ready within the timeout and
// is killed), the old one reopens the file read-write and serves on. An
// etcd store needs none of this.

// upgrades is a node's part in binary upgrades. A nil *upgrades (a node
// started in-process, as in tests) does none.
type upgrades struct {
	up   *server.Upgrader
	log  *slog.Logger
	usr2 chan os.Signal

	mu sync.Mutex
	// mu guards the store's promotion to read-write: cancelPromote stops
	// it and promoteDone is closed when it has returned.
	cancelPromote context.CancelFunc
	promoteDone   chan struct{}
}

// newUpgrades creates the process's Upgrader. SIGUSR2 is caught from here
// on, so that one arriving during start-up does not kill the process.
func newUpgrades(f UpgradeOptions, log *slog.Logger) (*upgrades, error) {
	up, err := server.NewUpgrader(server.UpgradeOptions{Logger: log, PIDFile: f.PIDFile, Timeout: f.Timeout})
	if err != nil {
		return nil, err
	}
	u := &upgrades{up: up, log: log.With("component", "upgrade"), usr2: make(chan os.Signal, 1)}
	signal.Notify(u.usr2, syscall.SIGUSR2)
	if up.Inherited() {
		u.log.Info("started by a binary upgrade: serving on the inherited sockets")
	}
	return u, nil
}

// statusNodeEnv passes the status portal's node name to the process a
// binary upgrade starts; it is read only in a process started by one.
const statusNodeEnv = "GATEHOUSE_UPGRADE_STATUS_NODE"

// statusNode is the status portal's node name for this process: the one
// the replaced process handed over, or "" (a new name) when not started
// by an upgrade.
func (u *upgrades) statusNode() string {
	if u == nil || !u.up.Inherited() {
		return ""
	}
	return os.Getenv(statusNodeEnv)
}

// listen is the node's server.Options.Listen: nil binds new sockets.
func (u *upgrades) listen() func(network, addr string) (net.Listener, error) {
	if u == nil {
		return nil
	}
	return u.up.Listen
}

// openStore opens the node's store. A node started by an upgrade opens the
// embedded store read-only, beside the process it replaces (step 2).
func (u *upgrades) openStore(cfg *config.Config, log *slog.Logger, newStore bool) (store.Store, error) {
	if u == nil || !u.up.Inherited() || cfg.Store.Etcd != nil {
		return openStore(cfg, log, newStore)
	}
	// The old process checked the file when it opened it.
	path := filepath.Join(cfg.DataDir, "gatehouse.db")
	return bolt.Open(path, bolt.Options{
		Logger: log, QuotaBytes: int64(cfg.Limits.StoreQuota), ReadOnly: true, SkipCheck: true,
		Marker: path + ".marker", // written once writable, if the store gets its first data here
	})
}

// start reports the node ready (the old process, if any, then drains) and
// makes its store writable once the old process has exited (step 4). It
// returns the channels wait selects on: SIGUSR2, and the one closed when a
// new process has taken over.
func (u *upgrades) start(st store.Store) (usr2 <-chan os.Signal, replaced <-chan struct{}, err error) {
	if u == nil {
		return nil, nil, nil
	}
	if err := u.up.Ready(); err != nil {
		return nil, nil, err
	}
	u.promoteAfter(st, u.up.ParentExited())
	return u.usr2, u.up.Exit(), nil
}

// stop ends the store's promotion and the Upgrader.
func (u *upgrades) stop() {
	if u == nil {
		return
	}
	// A process that drains ignores further upgrade signals rather than
	// die of them.
	signal.Ignore(syscall.SIGUSR2)
	u.cancelPromotion()
	u.up.Stop()
}

// promoteAfter reopens st read-write once ready is closed, retrying while
// another process still holds the file.
func (u *upgrades) promoteAfter(st store.Store, ready <-chan struct{}) {
	bs, ok := st.(*bolt.Store)
	if !ok {
		return
	}
	u.cancelPromotion()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	u.mu.Lock()
	u.cancelPromote, u.promoteDone = cancel, done
	u.mu.Unlock()
	go func() {
		defer close(done)
		select {
		case <-ready:
		case <-ctx.Done():
			return
		}
		_ = bs.WaitWritable(ctx) // nil, or ctx ended: the promotion was cancelled
	}()
}

// cancelPromotion stops a promotion in progress and waits for it.
func (u *upgrades) cancelPromotion() {
	u.mu.Lock()
	cancel, done := u.cancelPromote, u.promoteDone
	u.cancelPromote, u.promoteDone = nil, nil
	u.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// Upgrade starts the new binary and hands it the listeners (steps 1-2).
// On failure the store is made writable again and this process serves on.
func (n *Node) Upgrade() error {
	u := n.up
	if u == nil {
		return errors.New("upgrade: this node was not started by gatehouse serve")
	}
	start := time.Now()
	inFlight, _ := n.srv.Connections("https")
	u.log.Info("upgrade: starting the new binary", "https_connections", inFlight)
	closed := make(chan struct{})
	close(closed)
	err := u.up.Upgrade(server.Handover{
		Prepare: func() error {
			u.cancelPromotion()
			// The new process observes for the status portal under this
			// node's name (statusNodeEnv), so the node keeps one record.
			if n.portal != nil {
				if err := os.Setenv(statusNodeEnv, n.portal.Node()); err != nil {
					return fmt.Errorf("passing the status node name: %w", err)
				}
				n.portal.HandOver()
			}
			bs, ok := n.store.(*bolt.Store)
			if !ok {
				return nil
			}
			// The new process decides the status portal from now on; what
			// this one accounted is written while the store is writable.
			if n.portal != nil {
				if err := n.portal.Pause(); err != nil {
					u.log.Warn("upgrade: writing status history before the hand-over", "err", err)
				}
			}
			return bs.ReopenReadOnly()
		},
		Abort: func() {
			u.promoteAfter(n.store, closed)
			if n.portal != nil {
				n.portal.Resume()
			}
		},
	})
	took := time.Since(start).Round(time.Millisecond)
	if err != nil {
		u.log.Error("upgrade failed: this process keeps serving", "err", err, "took", took)
		return err
	}
	inFlight, _ = n.srv.Connections("https")
	u.log.Info("upgrade: the new process is ready; this one stops accepting and drains", "took", took, "https_connections", inFlight)
	return nil
}
