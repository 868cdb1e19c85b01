package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"gatehouse/internal/admin"
)

func newTokenCmd(cf *clientFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Manage named admin API tokens and their scopes (needs the admin scope)",
		Long: `Named tokens carry scopes: read, certificates, routes, status, admin.
A request needs the scope its endpoint declares (GET endpoints need read;
changes need certificates, routes or status; tokens, reload and upgrade need
admin) and is refused with 403 naming the missing scope. admin grants every
scope; the bootstrap token (admin.token) holds it. Tokens are kept hashed in
the store, so every node of a fleet accepts them. A secret is shown once, when
the token is added or rotated.`,
	}
	cf.register(cmd)

	var scopes string
	add := &cobra.Command{
		Use:   "add NAME [--scopes read,status]",
		Short: "Create a token and print its secret (shown this once)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			out, err := c.AddToken(cmd.Context(), args[0], strings.Split(scopes, ","))
			if err != nil {
				return err
			}
			return printSecret(cmd.OutOrStdout(), cf.jsonOut, "added", out)
		},
	}
	add.Flags().StringVar(&scopes, "scopes", "read", "comma-separated scopes: read, certificates, routes, status, admin")

	list := &cobra.Command{
		Use:   "list",
		Short: "List the tokens (names and scopes, never secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			ts, err := c.ListTokens(cmd.Context())
			if err != nil {
				return err
			}
			if cf.jsonOut {
				return printJSON(cmd.OutOrStdout(), ts)
			}
			printTokens(cmd.OutOrStdout(), ts)
			return nil
		},
	}
	rotate := &cobra.Command{
		Use:   "rotate NAME",
		Short: "Give a token a new secret; the old one stops working at once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			out, err := c.RotateToken(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printSecret(cmd.OutOrStdout(), cf.jsonOut, "rotated", out)
		},
	}
	rm := &cobra.Command{
		Use:   "rm NAME",
		Short: "Revoke a token",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			if err := c.RemoveToken(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed token %s\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(add, list, rotate, rm)
	return cmd
}

func printSecret(w io.Writer, jsonOut bool, verb string, out admin.TokenSecret) error {
	if jsonOut {
		return printJSON(w, out)
	}
	fmt.Fprintf(w, "%s token %s (scopes %s); its secret, shown this once:\n%s\n", verb, out.Token.Name, admin.JoinScopes(out.Token.Scopes, ","), out.Secret)
	return nil
}

func printTokens(w io.Writer, ts []admin.Token) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSCOPES\tCREATED\tROTATED\tCREATED BY")
	for _, t := range ts {
		rot := "-"
		if !t.RotatedAt.IsZero() {
			rot = t.RotatedAt.Format(time.DateTime)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.Name, admin.JoinScopes(t.Scopes, ","), t.CreatedAt.Format(time.DateTime), rot, t.CreatedBy)
	}
	tw.Flush()
}
