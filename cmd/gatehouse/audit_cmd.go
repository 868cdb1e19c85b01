package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"gatehouse/internal/admin"
)

func newAuditCmd(cf *clientFlags) *cobra.Command {
	var since time.Duration
	var object, output string
	var limit int
	cmd := &cobra.Command{
		Use:   "audit [--since 1h] [--object PREFIX] [-o json]",
		Short: "Show the changes made through the admin API: when, by which token, from where, what",
		Long: `Every change made through the admin API (certificates, hostnames, routes,
incidents, maintenance, overrides, tokens, reload, upgrade, drains) is
recorded once in the store, which every node of a fleet shares: time, token
name, source address, action, object and a summary of the object before and
after (never secrets, keys or PEM text). The trail keeps at most 100,000
records and 90 days ("gatehouse limits" shows audit_records).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("-o: %q is not an output format (want table or json)", output)
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			recs, more, err := c.Audit(cmd.Context(), since, object, limit)
			if err != nil {
				return err
			}
			if output == "json" || cf.jsonOut {
				return printJSON(cmd.OutOrStdout(), recs)
			}
			printAudit(cmd.OutOrStdout(), recs)
			if more {
				fmt.Fprintf(cmd.OutOrStdout(), "(more than %d records: narrow --since or --object, or raise --limit)\n", len(recs))
			}
			return nil
		},
	}
	cf.register(cmd)
	cmd.Flags().DurationVar(&since, "since", 24*time.Hour, "show the records of this last span")
	cmd.Flags().StringVar(&object, "object", "", "only objects starting with this (routes/ID, certs/, status/incidents/…)")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	cmd.Flags().IntVar(&limit, "limit", 1000, "at most this many records (1 to 10000)")
	return cmd
}

func printAudit(w io.Writer, recs []admin.AuditRecord) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tTOKEN\tFROM\tACTION\tOBJECT")
	for _, r := range recs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Time.Local().Format(time.DateTime), r.Token, r.Remote, r.Action, r.Object)
	}
	tw.Flush()
}
