package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"gatehouse/internal/admin"
	"gatehouse/internal/status"
)

// newIncidentCmd is `gatehouse incident open|update|resolve|list|postmortem`.
func newIncidentCmd(cf *clientFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "incident", Short: "Open, update and resolve status page incidents"}
	cf.register(cmd)
	cmd.AddCommand(newIncidentOpenCmd(cf), newIncidentUpdateCmd(cf), newIncidentResolveCmd(cf), newIncidentListCmd(cf), newIncidentPostmortemCmd(cf))
	return cmd
}

// newIncidentOpenCmd is `gatehouse incident open`.
func newIncidentOpenCmd(cf *clientFlags) *cobra.Command {
	var open status.IncidentRequest
	openCmd := &cobra.Command{
		Use:   "open NAME",
		Short: "Open an incident (published unless --draft)",
		Args:  cobra.ExactArgs(1),
		RunE: withClient(cf, func(cmd *cobra.Command, c *admin.Client, args []string) error {
			open.Name = args[0]
			in, err := c.OpenIncident(cmd.Context(), open)
			if err != nil {
				return err
			}
			return printIncident(cmd.OutOrStdout(), cf, in)
		}),
	}
	openCmd.Flags().StringVar(&open.Impact, "impact", "minor", "impact: none, minor, major or critical")
	openCmd.Flags().StringVar(&open.Status, "status", "investigating", "status: investigating, identified or monitoring")
	openCmd.Flags().StringVarP(&open.Body, "message", "m", "", "first update's text (required)")
	openCmd.Flags().StringSliceVar(&open.Components, "component", nil, "affected component (id, Region/Name or unique name); repeatable")
	openCmd.Flags().BoolVar(&open.Draft, "draft", false, "keep it off the public page until published")
	return openCmd
}

// newIncidentUpdateCmd is `gatehouse incident update`.
func newIncidentUpdateCmd(cf *clientFlags) *cobra.Command {
	var upd status.UpdateRequest
	var comps []string
	updateCmd := &cobra.Command{
		Use:   "update ID",
		Short: "Add an update to an incident's timeline",
		Args:  cobra.ExactArgs(1),
		RunE: withClient(cf, func(cmd *cobra.Command, c *admin.Client, args []string) error {
			if cmd.Flags().Changed("component") {
				upd.Components = comps
			}
			in, err := c.UpdateIncident(cmd.Context(), args[0], upd)
			if err != nil {
				return err
			}
			return printIncident(cmd.OutOrStdout(), cf, in)
		}),
	}
	updateCmd.Flags().StringVar(&upd.Status, "status", "", "status: investigating, identified, monitoring or resolved (required)")
	updateCmd.Flags().StringVarP(&upd.Body, "message", "m", "", "update text (required)")
	updateCmd.Flags().StringVar(&upd.Impact, "impact", "", "change the impact")
	updateCmd.Flags().StringSliceVar(&comps, "component", nil, "replace the affected components; repeatable")
	updateCmd.Flags().BoolVar(&upd.Publish, "publish", false, "publish a draft incident")
	return updateCmd
}

// newIncidentResolveCmd is `gatehouse incident resolve`.
func newIncidentResolveCmd(cf *clientFlags) *cobra.Command {
	var resolveMsg string
	resolveCmd := &cobra.Command{
		Use:   "resolve ID",
		Short: "Resolve an incident",
		Args:  cobra.ExactArgs(1),
		RunE: withClient(cf, func(cmd *cobra.Command, c *admin.Client, args []string) error {
			in, err := c.UpdateIncident(cmd.Context(), args[0], status.UpdateRequest{Status: status.Resolved, Body: resolveMsg})
			if err != nil {
				return err
			}
			return printIncident(cmd.OutOrStdout(), cf, in)
		}),
	}
	resolveCmd.Flags().StringVarP(&resolveMsg, "message", "m", "This incident has been resolved.", "update text")
	return resolveCmd
}

// newIncidentListCmd is `gatehouse incident list`.
func newIncidentListCmd(cf *clientFlags) *cobra.Command {
	listCmd := &cobra.Command{
		Use:   "list",
		Short: "List incidents, drafts included, newest first",
		Args:  cobra.NoArgs,
		RunE: withClient(cf, func(cmd *cobra.Command, c *admin.Client, args []string) error {
			list, err := c.Incidents(cmd.Context())
			if err != nil {
				return err
			}
			if cf.jsonOut {
				return printJSON(cmd.OutOrStdout(), list)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSTATUS\tIMPACT\tOPENED\tNAME")
			for _, in := range list {
				st := in.Status
				if in.Draft {
					st += " (draft)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", in.ID, st, in.Impact, in.CreatedAt.UTC().Format("2006-01-02 15:04"), in.Name)
			}
			return tw.Flush()
		}),
	}
	cf.outputFlag(listCmd)
	return listCmd
}

// newIncidentPostmortemCmd is `gatehouse incident postmortem`.
func newIncidentPostmortemCmd(cf *clientFlags) *cobra.Command {
	var pmOut, pmPublish string
	pmCmd := &cobra.Command{
		Use:   "postmortem ID",
		Short: "Write a post-incident report skeleton prefilled with the timeline, or publish one with --publish FILE",
		Args:  cobra.ExactArgs(1),
		RunE: withClient(cf, func(cmd *cobra.Command, c *admin.Client, args []string) error {
			if pmPublish != "" {
				md, err := os.ReadFile(pmPublish)
				if err != nil {
					return fmt.Errorf("--publish: %w", err)
				}
				in, err := c.PublishPostmortem(cmd.Context(), args[0], string(md))
				if err != nil {
					return err
				}
				return printIncident(cmd.OutOrStdout(), cf, in)
			}
			md, err := c.Postmortem(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if pmOut == "" {
				_, err = io.WriteString(cmd.OutOrStdout(), md)
				return err
			}
			if _, err := os.Stat(pmOut); err == nil {
				return fmt.Errorf("--out %s: exists; not overwriting a report being written", pmOut)
			}
			if err := os.WriteFile(pmOut, []byte(md), 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s; edit it, then: gatehouse incident postmortem %s --publish %s\n", pmOut, args[0], pmOut)
			return nil
		}),
	}
	pmCmd.Flags().StringVarP(&pmOut, "out", "o", "", "write the skeleton to this file instead of standard output")
	pmCmd.Flags().StringVar(&pmPublish, "publish", "", "publish this Markdown file as the incident's report")
	return pmCmd
}

func printIncident(w io.Writer, cf *clientFlags, in status.Incident) error {
	if cf.jsonOut {
		return printJSON(w, in)
	}
	draft := ""
	if in.Draft {
		draft = " (draft)"
	}
	fmt.Fprintf(w, "%s  %s%s  impact %s  %q\n", in.ID, in.Status, draft, in.Impact, in.Name)
	if u := in.Latest(); u.ID != "" {
		internal := ""
		if u.Internal || (in.Auto && len(in.Updates) == 1) {
			internal = " (machine-written, never published)"
		}
		fmt.Fprintf(w, "  %s  %s: %s%s\n", u.CreatedAt.UTC().Format("2006-01-02 15:04"), u.Status, u.Body, internal)
	}
	return nil
}

// newMaintenanceCmd is `gatehouse maintenance schedule|start|complete|list`.
func newMaintenanceCmd(cf *clientFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "maintenance", Short: "Schedule and run maintenance windows on the status page"}
	cf.register(cmd)

	cmd.AddCommand(newMaintenanceScheduleCmd(cf),
		newMaintenanceAdvanceCmd(cf, "start", "start", "Start a maintenance (its components show under maintenance)"),
		newMaintenanceAdvanceCmd(cf, "verify", "verify", "Mark a maintenance as verifying"),
		newMaintenanceAdvanceCmd(cf, "complete", "complete", "Complete a maintenance"), newMaintenanceListCmd(cf))
	return cmd
}

// newMaintenanceScheduleCmd is `gatehouse maintenance schedule`.
func newMaintenanceScheduleCmd(cf *clientFlags) *cobra.Command {
	var req status.MaintenanceRequest
	var from, until string
	schedCmd := &cobra.Command{
		Use:   "schedule NAME",
		Short: "Schedule a maintenance window (times in RFC 3339, e.g. 2026-05-01T22:00:00Z)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.Name = args[0]
			var err error
			if req.ScheduledFor, err = parseWhen("--from", from); err != nil {
				return err
			}
			if req.ScheduledUntil, err = parseWhen("--until", until); err != nil {
				return err
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			m, err := c.ScheduleMaintenance(cmd.Context(), req)
			if err != nil {
				return err
			}
			return printMaintenance(cmd.OutOrStdout(), cf, m)
		},
	}
	schedCmd.Flags().StringVar(&from, "from", "", "start of the window (required)")
	schedCmd.Flags().StringVar(&until, "until", "", "end of the window (required)")
	schedCmd.Flags().StringVarP(&req.Body, "message", "m", "", "announcement text")
	schedCmd.Flags().StringSliceVar(&req.Components, "component", nil, "affected component; repeatable")
	var md status.MaintenanceDrain
	schedCmd.Flags().StringVar(&md.Zone, "drain-zone", "", "drain this zone's members while the window runs")
	schedCmd.Flags().StringVar(&md.Member, "drain-member", "", "drain this member (host:port) while the window runs")
	schedCmd.Flags().StringVar(&md.Pool, "drain-pool", "", "drain only in this pool")
	schedCmd.Flags().BoolVar(&md.Force, "force-drain", false, "start even if the drain leaves a pool without a healthy member")
	schedCmd.PreRun = func(cmd *cobra.Command, args []string) {
		if md.Zone != "" || md.Member != "" || md.Pool != "" || md.Force {
			req.Drain = &md
		}
	}
	return schedCmd
}

// newMaintenanceAdvanceCmd is `gatehouse maintenance start|verify|complete`:
// it moves a maintenance on by action.
func newMaintenanceAdvanceCmd(cf *clientFlags, use, action, short string) *cobra.Command {
	var msg string
	c := &cobra.Command{
		Use: use + " ID", Short: short, Args: cobra.ExactArgs(1),
		RunE: withClient(cf, func(cmd *cobra.Command, c *admin.Client, args []string) error {
			m, err := c.AdvanceMaintenance(cmd.Context(), args[0], action, msg)
			if err != nil {
				return err
			}
			return printMaintenance(cmd.OutOrStdout(), cf, m)
		}),
	}
	c.Flags().StringVarP(&msg, "message", "m", "", "update text")
	return c
}

// newMaintenanceListCmd is `gatehouse maintenance list`.
func newMaintenanceListCmd(cf *clientFlags) *cobra.Command {
	listCmd := &cobra.Command{
		Use: "list", Short: "List maintenance windows", Args: cobra.NoArgs,
		RunE: withClient(cf, func(cmd *cobra.Command, c *admin.Client, args []string) error {
			list, err := c.Maintenances(cmd.Context())
			if err != nil {
				return err
			}
			if cf.jsonOut {
				return printJSON(cmd.OutOrStdout(), list)
			}
			for _, m := range list {
				printMaintenance(cmd.OutOrStdout(), cf, m)
			}
			return nil
		}),
	}
	cf.outputFlag(listCmd)
	return listCmd
}

func parseWhen(flag, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, fmt.Errorf("%s: is required", flag)
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s: %q is not an RFC 3339 time like 2026-05-01T22:00:00Z", flag, v)
	}
	return t, nil
}

func printMaintenance(w io.Writer, cf *clientFlags, m status.MaintenanceWindow) error {
	if cf.jsonOut {
		return printJSON(w, m)
	}
	_, err := fmt.Fprintf(w, "%s  %s  %s – %s  %q\n", m.ID, m.Status,
		m.ScheduledFor.UTC().Format("2006-01-02 15:04"), m.ScheduledUntil.UTC().Format("2006-01-02 15:04 UTC"), m.Name)
	if err == nil && m.Drain != nil {
		_, err = fmt.Fprintf(w, "    drain %s: %s %s\n", m.Drain, m.DrainState, m.DrainError)
	}
	return err
}

// newComponentCmd is `gatehouse component set|clear|list`.
func newComponentCmd(cf *clientFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "component", Short: "Override status page components by hand"}
	cf.register(cmd)
	cmd.AddCommand(newComponentSetCmd(cf), newComponentClearCmd(cf), newComponentListCmd(cf))
	return cmd
}

// newComponentSetCmd is `gatehouse component set`.
func newComponentSetCmd(cf *clientFlags) *cobra.Command {
	var reason string
	setCmd := &cobra.Command{
		Use:   "set COMPONENT STATE",
		Short: "Pin a component to a state (" + strings.Join(status.ComponentStates, ", ") + ") until cleared",
		Args:  cobra.ExactArgs(2),
		RunE: withClient(cf, func(cmd *cobra.Command, c *admin.Client, args []string) error {
			o, err := c.SetComponent(cmd.Context(), args[0], args[1], reason)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s set to %s until cleared\n", args[0], o.Status)
			return nil
		}),
	}
	setCmd.Flags().StringVar(&reason, "reason", "", "why (kept with the override)")
	return setCmd
}

// newComponentClearCmd is `gatehouse component clear`.
func newComponentClearCmd(cf *clientFlags) *cobra.Command {
	clearCmd := &cobra.Command{
		Use:   "clear COMPONENT",
		Short: "Return a component to its health-driven state",
		Args:  cobra.ExactArgs(1),
		RunE: withClient(cf, func(cmd *cobra.Command, c *admin.Client, args []string) error {
			if err := c.ClearComponent(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s follows its health checks again\n", args[0])
			return nil
		}),
	}
	return clearCmd
}

// newComponentListCmd is `gatehouse component list`.
func newComponentListCmd(cf *clientFlags) *cobra.Command {
	listCmd := &cobra.Command{
		Use: "list", Short: "List components with their state", Args: cobra.NoArgs,
		RunE: withClient(cf, func(cmd *cobra.Command, c *admin.Client, args []string) error {
			list, err := c.StatusComponents(cmd.Context())
			if err != nil {
				return err
			}
			if cf.jsonOut {
				return printJSON(cmd.OutOrStdout(), list)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tREGION\tNAME\tSTATUS\tHEALTH\tMEMBERS UP\tERRORS (WINDOW)")
			for _, cs := range list {
				st := cs.Status
				if cs.Override != nil {
					st += " (override)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d/%d\t%s%% of %d\n", cs.ID, cs.Region, cs.Name, st, cs.Health,
					cs.HealthyMembers, cs.TotalMembers, strconv.FormatFloat(cs.ErrorRate, 'f', -1, 64), cs.Requests)
			}
			return tw.Flush()
		}),
	}
	cf.outputFlag(listCmd)
	return listCmd
}

// newStatusCmd is `gatehouse status export --out DIR [--watch]` and
// `gatehouse status subscribers add|list|rm|deliveries`.
func newStatusCmd(cf *clientFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "status", Short: "The status portal: export it as a static site, manage its webhook subscribers"}
	cf.register(cmd)
	var out string
	var watch bool
	exportCmd := &cobra.Command{
		Use:   "export --out DIR",
		Short: "Write the complete status site (HTML, JSON, feeds, assets) to DIR; --watch re-exports on every change",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return errors.New("--out: is required")
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			return exportSite(cmd.Context(), c, out, watch, cmd.OutOrStdout())
		},
	}
	exportCmd.Flags().StringVarP(&out, "out", "o", "", "directory to write the site into")
	exportCmd.Flags().BoolVar(&watch, "watch", false, "keep running and re-export at every change")
	cmd.AddCommand(exportCmd, newSubscribersCmd(cf))
	return cmd
}

// newSubscribersCmd is `gatehouse status subscribers add|list|rm|deliveries`.
func newSubscribersCmd(cf *clientFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "subscribers", Short: "Webhook and email subscribers of the status portal and their delivery log"}
	cmd.AddCommand(newSubscribersAddCmd(cf), newSubscribersListCmd(cf), newSubscribersRmCmd(cf), newSubscribersDeliveriesCmd(cf), newSubscribersExportCmd(cf), newSubscribersImportCmd(cf), newSubscribersBounceCmd(cf))
	return cmd
}

// newSubscribersAddCmd is `gatehouse status subscribers add`.
func newSubscribersAddCmd(cf *clientFlags) *cobra.Command {
	var req status.SubscriberRequest
	var email string     // add --email (status_email_cmd.go)
	var resubscribe bool // add --email --resubscribe
	addCmd := &cobra.Command{
		Use:   "add --url URL | --email ADDR",
		Short: "Subscribe an endpoint (prints the signing secret once) or a confirmed email address to updates",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if email != "" {
				return addEmailSubscriber(cmd, cf, email, req.Components, resubscribe)
			}
			if req.URL == "" {
				return errors.New("--url: is required (or --email ADDR for an email subscriber)")
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			s, err := c.AddStatusWebhook(cmd.Context(), req)
			if err != nil {
				return err
			}
			if cf.jsonOut {
				return printJSON(cmd.OutOrStdout(), s)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "subscriber %s → %s\n", s.ID, s.URL)
			fmt.Fprintf(w, "secret: %s\n", s.Secret)
			fmt.Fprintf(w, "Keep the secret: it is not shown again. Each POST carries %s: sha256=HMAC-SHA256(secret, body) in hex.\n", status.SignatureHeader)
			return nil
		},
	}
	addCmd.Flags().StringVar(&req.URL, "url", "", "http(s) URL to POST updates to (required)")
	addCmd.Flags().StringVar(&req.Secret, "secret", "", "signing secret, at least 16 characters (default: a generated one)")
	addCmd.Flags().StringSliceVar(&req.Components, "component", nil, "only updates about this component (id, Region/Name or unique name); repeatable")
	addCmd.Flags().StringVar(&email, "email", "", "email address to subscribe, confirmed by you")
	addCmd.Flags().BoolVar(&resubscribe, "resubscribe", false, "with --email: add an address that unsubscribed (only with the person's consent)")
	return addCmd
}

// newSubscribersListCmd is `gatehouse status subscribers list`.
func newSubscribersListCmd(cf *clientFlags) *cobra.Command {
	var emailList bool // list --email
	listCmd := &cobra.Command{
		Use: "list [--email [ADDR]]", Short: "List webhook subscribers, or email subscribers with --email", Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if emailList {
				addr := ""
				if len(args) == 1 {
					addr = args[0]
				}
				return listEmailSubscribers(cmd, cf, addr)
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			list, err := c.StatusWebhooks(cmd.Context())
			if err != nil {
				return err
			}
			if cf.jsonOut {
				return printJSON(cmd.OutOrStdout(), list)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tURL\tCOMPONENTS\tCREATED")
			for _, s := range list {
				comps := "all"
				if len(s.Components) > 0 {
					comps = strings.Join(s.Components, ",")
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", s.ID, s.URL, comps, s.CreatedAt.UTC().Format("2006-01-02 15:04 UTC"))
			}
			return tw.Flush()
		},
	}
	cf.outputFlag(listCmd)
	listCmd.Flags().BoolVar(&emailList, "email", false, "list email subscribers (of one address if given)")
	return listCmd
}

// newSubscribersRmCmd is `gatehouse status subscribers rm`.
func newSubscribersRmCmd(cf *clientFlags) *cobra.Command {
	var rmEmail bool
	rmCmd := &cobra.Command{
		Use: "rm ID | rm --email ADDR", Short: "Remove a webhook subscriber, or an email subscriber with --email", Args: cobra.ExactArgs(1),
		RunE: withClient(cf, func(cmd *cobra.Command, c *admin.Client, args []string) error {
			if rmEmail {
				if err := c.RemoveEmailSubscriber(cmd.Context(), args[0]); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "email subscriber %s removed\n", args[0])
				return nil
			}
			if err := c.RemoveStatusWebhook(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "subscriber %s removed\n", args[0])
			return nil
		}),
	}
	rmCmd.Flags().BoolVar(&rmEmail, "email", false, "the argument is an email address")
	return rmCmd
}

// newSubscribersDeliveriesCmd is `gatehouse status subscribers deliveries`.
func newSubscribersDeliveriesCmd(cf *clientFlags) *cobra.Command {
	deliveriesCmd := &cobra.Command{
		Use: "deliveries [ID]", Short: "Show the webhook delivery log (the fleet's last 500 attempts), of one subscriber or all",
		Args: cobra.MaximumNArgs(1),
		RunE: withClient(cf, func(cmd *cobra.Command, c *admin.Client, args []string) error {
			sub := ""
			if len(args) == 1 {
				sub = args[0]
			}
			list, err := c.StatusDeliveries(cmd.Context(), sub)
			if err != nil {
				return err
			}
			if cf.jsonOut {
				return printJSON(cmd.OutOrStdout(), list)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "AT\tSUBSCRIBER\tEVENT\tDELIVERY\tATTEMPT\tRESULT")
			for _, d := range list {
				result := "ok"
				if d.Recipients > 0 {
					result = fmt.Sprintf("ok, %d emails", d.Recipients)
				}
				if !d.OK {
					result = d.Error
					if d.Final {
						result += " (gave up)"
					}
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", d.At.UTC().Format("2006-01-02 15:04:05"), d.Subscriber, d.Event, d.ID, d.Attempt, result)
			}
			return tw.Flush()
		}),
	}
	return deliveriesCmd
}

// exportSite writes the site once, then, with watch, again after each
// change until ctx is done.
func exportSite(ctx context.Context, c *admin.Client, dir string, watch bool, w io.Writer) error {
	var rev uint64
	for {
		site, err := c.StatusSite(ctx, rev, 25*time.Second)
		if err != nil {
			if watch && ctx.Err() != nil {
				return nil
			}
			return err
		}
		if site.Revision != rev {
			files := make(map[string][]byte, len(site.Files))
			for k, v := range site.Files {
				files[k] = []byte(v)
			}
			if err := status.WriteSite(dir, files); err != nil {
				return fmt.Errorf("--out %s: %w", dir, err)
			}
			fmt.Fprintf(w, "exported revision %d (%d files) to %s\n", site.Revision, len(files), dir)
			rev = site.Revision
		}
		if !watch {
			return nil
		}
	}
}
