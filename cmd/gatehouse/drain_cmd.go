package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"gatehouse/internal/admin"
	"gatehouse/internal/drain"
)

// drainPollEvery is how often `gatehouse drain` reports progress.
const drainPollEvery = 500 * time.Millisecond

func newDrainCmd(cf *clientFlags) *cobra.Command {
	var req admin.DrainRequest
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "drain",
		Short: "Stop sending new requests to members (a zone, or one member) and wait until their work is done",
		Long: `Drains members fleet-wide: every node stops sending them new requests at once,
requests in flight finish, upstream keep-alive connections are closed as they go
idle and WebSockets after --upgrade-grace. Progress (requests in flight and open
upstream connections of this node, per member) is shown until both reach zero or
--timeout passes. A drain that would leave a pool without a healthy member is
refused unless --force. The drain stays (across restarts) until 'gatehouse undrain'.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if req.Zone == "" && req.Member == "" {
				return fmt.Errorf("name a --zone or a --member")
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			req.Reason = "cli"
			res, err := c.Drain(cmd.Context(), req)
			if err != nil {
				return err
			}
			if cf.jsonOut {
				return printJSON(cmd.OutOrStdout(), res)
			}
			out := cmd.OutOrStdout()
			for _, r := range res.Members {
				fmt.Fprintf(out, "drained %s %s (zone %s)\n", r.Pool, r.Member, orDash(r.Zone))
			}
			if len(res.Members) == 0 {
				fmt.Fprintln(out, "already drained")
			}
			for _, cp := range res.Capacities {
				fmt.Fprintf(out, "pool %s: %d of %d members healthy and not drained (weight %d of %d)\n",
					cp.Pool, cp.Healthy, cp.Members, cp.HealthyWeight, cp.TotalWeight)
			}
			return waitDrained(cmd.Context(), c, req, timeout, out)
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Zone, "zone", "", "drain the members in this zone")
	f.StringVar(&req.Pool, "pool", "", "only in this pool (default: every pool)")
	f.StringVar(&req.Member, "member", "", "drain the member with this address (host:port)")
	f.BoolVar(&req.Force, "force", false, "drain even if a pool is left without a healthy member")
	f.StringVar(&req.UpgradeGrace, "upgrade-grace", "", "how long WebSockets to drained members may go on (default 30s)")
	f.DurationVar(&timeout, "timeout", 10*time.Minute, "how long to wait for in-flight work to finish")
	cf.register(cmd)
	return cmd
}

// waitDrained reports the work left on the drained members req selects
// until none is left or timeout passes.
func waitDrained(ctx context.Context, c *admin.Client, req admin.DrainRequest, timeout time.Duration, out io.Writer) error {
	deadline := time.Now().Add(timeout)
	start := time.Now()
	for {
		st, err := c.DrainState(ctx)
		if err != nil {
			return err
		}
		var busy []drain.Progress
		for _, p := range st.Progress {
			if selected(req, p) && (p.InFlight > 0 || p.OpenConns > 0) {
				busy = append(busy, p)
			}
		}
		if len(busy) == 0 {
			fmt.Fprintf(out, "drained: no request in flight and no upstream connection left (%s)\n", time.Since(start).Round(time.Millisecond))
			return nil
		}
		var parts []string
		for _, p := range busy {
			parts = append(parts, fmt.Sprintf("%s %s: %d in flight, %d connections", p.Pool, p.Member, p.InFlight, p.OpenConns))
		}
		fmt.Fprintf(out, "%s  %s\n", time.Since(start).Round(time.Second), strings.Join(parts, "; "))
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s; still busy: %s (the drain stays; undrain with 'gatehouse undrain')", timeout, strings.Join(parts, "; "))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(drainPollEvery):
		}
	}
}

func selected(req admin.DrainRequest, p drain.Progress) bool {
	return (req.Pool == "" || p.Pool == req.Pool) && (req.Zone == "" || p.Zone == req.Zone) && (req.Member == "" || p.Member == req.Member)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newUndrainCmd(cf *clientFlags) *cobra.Command {
	var req admin.DrainRequest
	cmd := &cobra.Command{
		Use:   "undrain",
		Short: "Let drained members take traffic again (through slow start)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if req.Zone == "" && req.Member == "" && req.Pool == "" {
				return fmt.Errorf("name a --zone, a --member or a --pool")
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			res, err := c.Undrain(cmd.Context(), req)
			if err != nil {
				return err
			}
			if cf.jsonOut {
				return printJSON(cmd.OutOrStdout(), res)
			}
			for _, r := range res.Members {
				fmt.Fprintf(cmd.OutOrStdout(), "undrained %s %s (zone %s)\n", r.Pool, r.Member, orDash(r.Zone))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Zone, "zone", "", "undrain the members in this zone")
	f.StringVar(&req.Pool, "pool", "", "only in this pool (alone: every drained member of the pool)")
	f.StringVar(&req.Member, "member", "", "undrain the member with this address")
	cf.register(cmd)
	return cmd
}
