package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"gatehouse/internal/server"
)

func newUpgradeCmd(cf *clientFlags) *cobra.Command {
	var (
		pidFile string
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "upgrade",
		Short: "Replace the running server with the binary now at its path, without dropping a connection",
		Long: `Asks the running node to start the binary at its own path again and hand it
its listening sockets; the old process stops accepting once the new one is
ready, then drains its connections and exits. A new binary that fails to start
or to become ready leaves the old process serving, and the reason is printed.

By default the request goes through the admin API (like reload). With
--pid-file the process named there is sent SIGUSR2 instead, and the command
waits until the PID file names the new process (its log says why if not).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if pidFile != "" {
				return runUpgrade(cmd.Context(), pidFile, timeout, cmd.OutOrStdout())
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			if err := c.Upgrade(ctx); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "upgraded: the new process serves; the old one drains its connections and exits")
			return nil
		},
	}
	cmd.Flags().StringVar(&pidFile, "pid-file", "", "signal the process this PID file names (gatehouse serve --pid-file) instead of using the admin API")
	cmd.Flags().DurationVar(&timeout, "timeout", server.DefaultUpgradeTimeout+5*time.Second, "how long to wait for the new process")
	cf.register(cmd)
	return cmd
}

// runUpgrade signals the process of pidFile and waits for the PID file to
// name a new, live process.
func runUpgrade(ctx context.Context, pidFile string, timeout time.Duration, out interface{ Write([]byte) (int, error) }) error {
	old, err := readPIDFile(pidFile)
	if err != nil {
		return err
	}
	if err := syscall.Kill(old, syscall.SIGUSR2); err != nil {
		return fmt.Errorf("signalling process %d of --pid-file %s: %w", old, pidFile, err)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		if pid, err := readPIDFile(pidFile); err == nil && pid != old && alive(pid) {
			fmt.Fprintf(out, "upgraded: process %d serves; process %d drains its connections and exits\n", pid, old)
			return nil
		}
		if !alive(old) {
			return fmt.Errorf("process %d exited during the upgrade and --pid-file %s names no new process: see its log", old, pidFile)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no new process became ready within %s: process %d keeps serving (a failed upgrade leaves it in place); its log says why", timeout, old)
		case <-t.C:
		}
	}
}

// readPIDFile reads the PID a PID file holds.
func readPIDFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("reading --pid-file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("--pid-file %s holds %q, not a process id", path, strings.TrimSpace(string(b)))
	}
	return pid, nil
}

// alive reports whether process pid exists (and is not a zombie).
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true // no procfs: trust the signal
	}
	// The state follows the command name in parentheses.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}
