package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/cloudflare/tableflip"
)

// DefaultUpgradeTimeout is how long a new process has to become ready
// before an upgrade is abandoned and the new process is killed.
const DefaultUpgradeTimeout = 30 * time.Second

// UpgradeOptions configure NewUpgrader. The zero value is usable.
type UpgradeOptions struct {
	// Logger receives operational messages; nil discards them.
	Logger *slog.Logger
	// PIDFile, if set, receives the PID of the serving process (replaced
	// atomically) when it becomes ready: after an upgrade it names the new
	// process, after a failed one it still names the old.
	PIDFile string
	// Timeout is how long a new process has to become ready; 0 means
	// DefaultUpgradeTimeout.
	Timeout time.Duration
}

// Handover is what the old process does around starting the new one.
type Handover struct {
	// Prepare runs before the new process starts, e.g. to release a file
	// lock the new process needs; an error cancels the upgrade. nil: nothing.
	Prepare func() error
	// Abort runs after a prepared upgrade failed, to undo Prepare; also
	// after Prepare itself failed, which may have done part of its work.
	// It must be safe to run whatever part of Prepare ran. nil: nothing.
	Abort func()
}

// Upgrader hands this process's listening sockets to a new process started
// from the same executable path (read from disk again), so that a binary
// upgrade drops no connection: the new process inherits every socket, and
// the old one stops accepting only once the new one is ready. It wraps
// cloudflare/tableflip; a process may create only one.
type Upgrader struct {
	log *slog.Logger
	upg *tableflip.Upgrader

	// mu serialises Upgrade.
	mu sync.Mutex
	// parentGone is closed when the process this one replaced has exited
	// (at once for a process not started by an upgrade).
	parentGone chan struct{}
	cancel     context.CancelFunc
	bg         sync.WaitGroup
}

// NewUpgrader returns the process's Upgrader; in a process started by an
// upgrade it holds the inherited sockets. It fails on a second call and on
// platforms without the needed fd passing.
func NewUpgrader(opts UpgradeOptions) (*Upgrader, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = DefaultUpgradeTimeout
	}
	upg, err := tableflip.New(tableflip.Options{UpgradeTimeout: timeout, PIDFile: opts.PIDFile})
	if err != nil {
		return nil, fmt.Errorf("binary upgrades: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	u := &Upgrader{log: log.With("component", "upgrade"), upg: upg, parentGone: make(chan struct{}), cancel: cancel}
	u.bg.Go(func() {
		err := upg.WaitForParent(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			u.log.Warn("the process this one replaced ended badly", "err", err)
		} else if upg.HasParent() {
			u.log.Info("the process this one replaced has exited")
		}
		close(u.parentGone)
	})
	return u, nil
}

// Inherited reports whether this process was started by an upgrade, and
// so inherits its listening sockets from the process it replaces.
func (u *Upgrader) Inherited() bool { return u.upg.HasParent() }

// Listen returns the socket for network and addr that the old process
// passed on, or binds a new one. It is Options.Listen.
func (u *Upgrader) Listen(network, addr string) (net.Listener, error) {
	return u.upg.Listen(network, addr)
}

// Ready reports that this process serves: it writes the PID file and, in a
// process started by an upgrade, tells the old process to stop accepting,
// drain and exit. Sockets inherited but not listened on are closed.
func (u *Upgrader) Ready() error {
	if err := u.upg.Ready(); err != nil {
		return fmt.Errorf("binary upgrades: reporting ready: %w", err)
	}
	return nil
}

// ParentExited is closed once the process this one replaced has exited; at
// once for a process not started by an upgrade.
func (u *Upgrader) ParentExited() <-chan struct{} { return u.parentGone }

// Exit is closed once a new process is ready: this one must stop
// accepting, drain its connections and exit.
func (u *Upgrader) Exit() <-chan struct{} { return u.upg.Exit() }

// Upgrade starts a new process from the executable path this one was
// started from, with the same arguments, and hands it every listening
// socket. It returns nil once the new process is ready (Exit is then
// closed), or an error if the new process could not start, exited or did
// not become ready within the timeout (it is then killed); after an error
// this process goes on serving as before. h's Prepare runs first, and its
// Abort after a failure (Prepare's own included).
func (u *Upgrader) Upgrade(h Handover) error {
	if !u.mu.TryLock() {
		return errors.New("upgrade: another upgrade is in progress")
	}
	defer u.mu.Unlock()
	select {
	case <-u.upg.Exit():
		return errors.New("upgrade: this process has already been replaced")
	default:
	}
	select {
	case <-u.parentGone:
	default:
		return errors.New("upgrade: the process this one replaced has not exited yet; retry once it has")
	}
	exe, err := executable()
	if err != nil {
		return err
	}
	if h.Prepare != nil {
		if err := h.Prepare(); err != nil {
			if h.Abort != nil {
				h.Abort()
			}
			return fmt.Errorf("upgrade: preparing the hand-over: %w", err)
		}
	}
	if err := u.upg.Upgrade(); err != nil {
		if h.Abort != nil {
			h.Abort()
		}
		return fmt.Errorf("upgrade: new process from %s: %w", exe, err)
	}
	return nil
}

// Stop ends upgrades: a running one is abandoned and its new process
// killed, and later ones fail. It waits for the Upgrader's goroutine.
func (u *Upgrader) Stop() {
	u.upg.Stop()
	u.cancel()
	u.bg.Wait()
}

// executable resolves the path the new process is started from (the one
// this process was started as, os.Args[0]) and checks it can be run, so
// that a missing binary is reported by name.
func executable() (string, error) {
	path, err := exec.LookPath(os.Args[0])
	if err != nil {
		return "", fmt.Errorf("upgrade: executable %s: %w", os.Args[0], err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("upgrade: executable %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("upgrade: executable %s is not an executable file (mode %s)", path, fi.Mode())
	}
	return path, nil
}
