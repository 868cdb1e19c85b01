package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"gatehouse/internal/admin"
	"gatehouse/internal/routes"
)

func newRouteCmd(cf *clientFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "route",
		Short: "Manage dynamic routes live through the admin API (every node of a fleet follows)",
		Long: `Manage the routes kept in the store, beside those of the configuration file.
Every node serves a change from its next request. A route names a pool of the
nodes' configuration; a host and path prefix routed by the configuration file
cannot be redefined here.`,
	}
	cf.register(cmd)
	cmd.AddCommand(newRouteAddCmd(cf), newRouteListCmd(cf), newRouteRmCmd(cf), newRouteSetCmd(cf))
	return cmd
}

// newRouteAddCmd is `gatehouse route add`.
func newRouteAddCmd(cf *clientFlags) *cobra.Command {
	var req admin.RouteRequest
	add := &cobra.Command{
		Use:   "add --host HOST [--path /PREFIX] --pool NAME [--tenant T] [--replace]",
		Short: "Route a host (and path prefix) to a pool",
		Args:  cobra.NoArgs,
		RunE: withClient(cf, func(cmd *cobra.Command, c *admin.Client, args []string) error {
			r, err := c.AddRoute(cmd.Context(), req)
			if err != nil {
				return err
			}
			if cf.jsonOut {
				return printJSON(cmd.OutOrStdout(), r)
			}
			verb := "added"
			if req.Replace {
				verb = "stored"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s %s: %s%s → %s\n", verb, r.ID, r.Host, r.PathPrefix, r.Pool)
			return nil
		}),
	}
	add.Flags().StringVar(&req.Host, "host", "", "hostname, *.example.com or *")
	add.Flags().StringVar(&req.PathPrefix, "path", "/", "path prefix, starting with /")
	add.Flags().StringVar(&req.Pool, "pool", "", "pool of the nodes' configuration")
	add.Flags().StringVar(&req.Tenant, "tenant", "", "label: whose route it is")
	add.Flags().BoolVar(&req.Replace, "replace", false, "replace a route of the same host and path prefix")
	_ = add.MarkFlagRequired("host")
	_ = add.MarkFlagRequired("pool")
	return add
}

// newRouteListCmd is `gatehouse route list`.
func newRouteListCmd(cf *clientFlags) *cobra.Command {
	list := &cobra.Command{
		Use:   "list",
		Short: "List the dynamic routes (not those of the configuration file)",
		Args:  cobra.NoArgs,
		RunE: withClient(cf, func(cmd *cobra.Command, c *admin.Client, args []string) error {
			rs, err := c.ListRoutes(cmd.Context())
			if err != nil {
				return err
			}
			if cf.jsonOut {
				return printJSON(cmd.OutOrStdout(), rs)
			}
			printRoutes(cmd.OutOrStdout(), rs)
			return nil
		}),
	}
	cf.outputFlag(list)
	return list
}

// newRouteRmCmd is `gatehouse route rm`.
func newRouteRmCmd(cf *clientFlags) *cobra.Command {
	rm := &cobra.Command{
		Use:   "rm ID",
		Short: "Remove a dynamic route; nodes stop routing it at once",
		Args:  cobra.ExactArgs(1),
		RunE: withClient(cf, func(cmd *cobra.Command, c *admin.Client, args []string) error {
			if err := c.RemoveRoute(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed %s\n", args[0])
			return nil
		}),
	}
	return rm
}

// newRouteSetCmd is `gatehouse route set`.
func newRouteSetCmd(cf *clientFlags) *cobra.Command {
	var pool, tenant string
	set := &cobra.Command{
		Use:   "set ID [--pool NAME] [--tenant T]",
		Short: "Change the pool (or tenant label) of a dynamic route",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var u routes.Update
			if cmd.Flags().Changed("pool") {
				u.Pool = &pool
			}
			if cmd.Flags().Changed("tenant") {
				u.Tenant = &tenant
			}
			if u.Pool == nil && u.Tenant == nil {
				return fmt.Errorf("give --pool or --tenant")
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			r, err := c.UpdateRoute(cmd.Context(), args[0], u)
			if err != nil {
				return err
			}
			if cf.jsonOut {
				return printJSON(cmd.OutOrStdout(), r)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "updated %s: %s%s → %s\n", r.ID, r.Host, r.PathPrefix, r.Pool)
			return nil
		},
	}
	set.Flags().StringVar(&pool, "pool", "", "pool of the nodes' configuration")
	set.Flags().StringVar(&tenant, "tenant", "", "label: whose route it is (empty clears it)")
	return set
}

func printRoutes(w io.Writer, rs []routes.Route) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tHOST\tPATH\tPOOL\tTENANT\tUPDATED")
	for _, r := range rs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Host, r.PathPrefix, r.Pool, r.Tenant, r.UpdatedAt.Format(time.DateTime))
	}
	tw.Flush()
	fmt.Fprintf(w, "%d routes\n", len(rs))
}
