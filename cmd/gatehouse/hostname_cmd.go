package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"gatehouse/internal/admin"
	"gatehouse/internal/hostnames"
)

func newHostnameCmd(cf *clientFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "hostname",
		Short: "Manage customer hostnames: routed, and certified by the ACME CA without a person",
		Long: `A customer hostname is routed to a pool and, unless its certificate is
uploaded, gets one from the ACME CA of the acme: section, renewed before it
expires. Its state: pending_validation → issuing → active → renewing →
active…, or failed with the CA's reason, the attempt count and the next retry.`,
	}
	cf.register(cmd)
	cmd.AddCommand(newHostnameAddCmd(cf), newHostnameListCmd(cf), newHostnameShowCmd(cf), newHostnameRetryCmd(cf), newHostnameRmCmd(cf))
	return cmd
}

// newHostnameAddCmd is `gatehouse hostname add`.
func newHostnameAddCmd(cf *clientFlags) *cobra.Command {
	var req admin.HostnameRequest
	var uploaded bool
	add := &cobra.Command{
		Use:   "add NAME --tenant T --pool P [--uploaded]",
		Short: "Register a hostname and its route; its certificate is ordered at once",
		Args:  cobra.ExactArgs(1),
		RunE: withClient(cf, func(cmd *cobra.Command, c *admin.Client, args []string) error {
			req.Name = args[0]
			if uploaded {
				req.Source = hostnames.SourceUploaded
			}
			h, err := c.AddHostname(cmd.Context(), req)
			if err != nil {
				return err
			}
			if cf.jsonOut {
				return printJSON(cmd.OutOrStdout(), h)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "added %s (tenant %q, pool %s): %s\n", h.Name, h.Tenant, h.Pool, h.State)
			return nil
		}),
	}
	add.Flags().StringVar(&req.Tenant, "tenant", "", "the customer the hostname belongs to")
	add.Flags().StringVar(&req.Pool, "pool", "", "pool of the nodes' configuration")
	add.Flags().BoolVar(&uploaded, "uploaded", false, "the certificate is uploaded with gatehouse cert add, not ordered")
	_ = add.MarkFlagRequired("pool")
	return add
}

// newHostnameListCmd is `gatehouse hostname list`.
func newHostnameListCmd(cf *clientFlags) *cobra.Command {
	var state string
	list := &cobra.Command{
		Use:   "list [--state S]",
		Short: "List hostnames with their state, certificate expiry and next attempt",
		Args:  cobra.NoArgs,
		RunE: withClient(cf, func(cmd *cobra.Command, c *admin.Client, args []string) error {
			hs, err := c.ListHostnames(cmd.Context(), state)
			if err != nil {
				return err
			}
			if cf.jsonOut {
				return printJSON(cmd.OutOrStdout(), hs)
			}
			printHostnames(cmd.OutOrStdout(), hs)
			return nil
		}),
	}
	cf.outputFlag(list)
	list.Flags().StringVar(&state, "state", "", "only this state: pending_validation, issuing, active, renewing, failed")
	return list
}

// newHostnameShowCmd is `gatehouse hostname show`.
func newHostnameShowCmd(cf *clientFlags) *cobra.Command {
	show := &cobra.Command{
		Use:   "show NAME",
		Short: "Show one hostname",
		Args:  cobra.ExactArgs(1),
		RunE: withClient(cf, func(cmd *cobra.Command, c *admin.Client, args []string) error {
			h, err := c.GetHostname(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), h)
		}),
	}
	return show
}

// newHostnameRetryCmd is `gatehouse hostname retry`.
func newHostnameRetryCmd(cf *clientFlags) *cobra.Command {
	retry := &cobra.Command{
		Use:   "retry NAME",
		Short: "Order now (after fixing what made the last order fail)",
		Args:  cobra.ExactArgs(1),
		RunE: withClient(cf, func(cmd *cobra.Command, c *admin.Client, args []string) error {
			h, err := c.RetryHostname(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s, next attempt now\n", h.Name, h.State)
			return nil
		}),
	}
	return retry
}

// newHostnameRmCmd is `gatehouse hostname rm`.
func newHostnameRmCmd(cf *clientFlags) *cobra.Command {
	rm := &cobra.Command{
		Use:   "rm NAME",
		Short: "Remove a hostname: its route and ACME certificate go with it",
		Args:  cobra.ExactArgs(1),
		RunE: withClient(cf, func(cmd *cobra.Command, c *admin.Client, args []string) error {
			if err := c.RemoveHostname(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed %s\n", hostnames.Normalize(args[0]))
			return nil
		}),
	}
	return rm
}

func printHostnames(w io.Writer, hs []hostnames.Hostname) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tTENANT\tPOOL\tSOURCE\tSTATE\tNOT AFTER\tNEXT ATTEMPT\tATTEMPTS\tREASON")
	ts := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format(time.DateTime)
	}
	for _, h := range hs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", h.Name, h.Tenant, h.Pool, h.Source, h.State,
			ts(h.NotAfter), ts(h.NextAttempt), h.Attempts, h.Reason)
	}
	tw.Flush()
	fmt.Fprintf(w, "%d hostnames\n", len(hs))
}
