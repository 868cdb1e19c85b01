package main

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"gatehouse/internal/status"
)

// Email subscribers under `gatehouse status subscribers`: add --email,
// list --email, rm --email, export (CSV), import FILE (CSV) and bounce
// (--email ADDR or --dsn FILE).

// emailState is how a subscriber shows in lists.
func emailState(s status.EmailSubscriber) string {
	if s.Suspended {
		return "suspended"
	}
	return "confirmed"
}

func emailComps(s status.EmailSubscriber) string {
	if len(s.Components) == 0 {
		return "all"
	}
	return strings.Join(s.Components, ";")
}

// addEmailSubscriber is `subscribers add --email ADDR [--component C]… [--resubscribe]`.
func addEmailSubscriber(cmd *cobra.Command, cf *clientFlags, addr string, comps []string, resubscribe bool) error {
	c, err := cf.client()
	if err != nil {
		return err
	}
	s, err := c.AddEmailSubscriber(cmd.Context(), status.EmailSubscriberRequest{Email: addr, Components: comps, Resubscribe: resubscribe})
	if err != nil {
		return err
	}
	if cf.jsonOut {
		return printJSON(cmd.OutOrStdout(), s)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "email subscriber %s (%s) confirmed, components: %s\n", s.Email, s.ID, emailComps(s))
	return nil
}

// listEmailSubscribers is `subscribers list --email [ADDR]`.
func listEmailSubscribers(cmd *cobra.Command, cf *clientFlags, addr string) error {
	c, err := cf.client()
	if err != nil {
		return err
	}
	w := cmd.OutOrStdout()
	if cf.jsonOut {
		enc := newJSONLines(w)
		return c.EmailSubscribers(cmd.Context(), addr, enc)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "EMAIL\tSTATE\tCOMPONENTS\tFAILURES\tCONFIRMED")
	err = c.EmailSubscribers(cmd.Context(), addr, func(s status.EmailSubscriber) error {
		_, err := fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", s.Email, emailState(s), emailComps(s), s.Failures, s.ConfirmedAt.UTC().Format("2006-01-02 15:04 UTC"))
		return err
	})
	if err != nil {
		return err
	}
	return tw.Flush()
}

func newJSONLines(w io.Writer) func(status.EmailSubscriber) error {
	return func(s status.EmailSubscriber) error { return printJSON(w, s) }
}

func newSubscribersExportCmd(cf *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use: "export", Short: "Write the email subscribers as CSV (email,components,state,failures,confirmed_at)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			w := csv.NewWriter(cmd.OutOrStdout())
			w.Write([]string{"email", "components", "state", "failures", "confirmed_at"})
			err = c.EmailSubscribers(cmd.Context(), "", func(s status.EmailSubscriber) error {
				comps := strings.Join(s.Components, ";")
				return w.Write([]string{s.Email, comps, emailState(s), strconv.Itoa(s.Failures), s.ConfirmedAt.UTC().Format("2006-01-02T15:04:05Z")})
			})
			w.Flush()
			return errors.Join(err, w.Error())
		},
	}
}

func newSubscribersImportCmd(cf *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "import FILE",
		Short: "Add confirmed email subscribers from CSV lines: email[,components separated by ;] (a header line is skipped; - reads stdin)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			in, err := openInput(cmd, args[0])
			if err != nil {
				return err
			}
			defer in.Close()
			c, err := cf.client()
			if err != nil {
				return err
			}
			r := csv.NewReader(in)
			r.FieldsPerRecord = -1
			r.TrimLeadingSpace = true
			added, failed := 0, 0
			for {
				rec, err := r.Read()
				if err == io.EOF {
					break
				}
				line, _ := r.FieldPos(0)
				if err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "line %d: %v\n", line, err)
					failed++
					continue
				}
				if len(rec) == 0 || (line == 1 && strings.EqualFold(strings.TrimSpace(rec[0]), "email")) {
					continue
				}
				req := status.EmailSubscriberRequest{Email: strings.TrimSpace(rec[0])}
				if len(rec) > 1 && strings.TrimSpace(rec[1]) != "" && strings.TrimSpace(rec[1]) != "all" {
					for _, comp := range strings.Split(rec[1], ";") {
						req.Components = append(req.Components, strings.TrimSpace(comp))
					}
				}
				if _, err := c.AddEmailSubscriber(cmd.Context(), req); err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "line %d: %v\n", line, err)
					failed++
					continue
				}
				added++
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d email subscribers added, %d lines refused\n", added, failed)
			if failed > 0 {
				return fmt.Errorf("%d lines refused", failed)
			}
			return nil
		},
	}
}

func newSubscribersBounceCmd(cf *clientFlags) *cobra.Command {
	var addr, dsn string
	cmd := &cobra.Command{
		Use:   "bounce (--email ADDR | --dsn FILE)",
		Short: "Record a bounce that arrived after the mail server accepted a message: for an address, or for the failed recipients of a delivery status notification (- reads stdin); it counts toward status.email.max_failures",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			req := status.BounceRequest{Email: addr}
			if dsn != "" {
				in, err := openInput(cmd, dsn)
				if err != nil {
					return err
				}
				defer in.Close()
				b, err := io.ReadAll(io.LimitReader(in, status.MaxDSNBytes+1))
				if err != nil {
					return err
				}
				if len(b) > status.MaxDSNBytes {
					return fmt.Errorf("--dsn: larger than %d bytes", status.MaxDSNBytes)
				}
				req.DSN = string(b)
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			res, err := c.RecordEmailBounce(cmd.Context(), req)
			if err != nil {
				return err
			}
			if cf.jsonOut {
				return printJSON(cmd.OutOrStdout(), res)
			}
			w := cmd.OutOrStdout()
			for _, s := range res.Recorded {
				state := "confirmed"
				if s.Suspended {
					state = "suspended"
				}
				fmt.Fprintf(w, "%s: %d failure(s), %s\n", s.Email, s.Failures, state)
			}
			for _, a := range res.Unknown {
				fmt.Fprintf(w, "%s: not a subscriber\n", a)
			}
			if res.Ignored > 0 {
				fmt.Fprintf(w, "%d recipient(s) of the report did not fail for good (ignored)\n", res.Ignored)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&addr, "email", "", "the address that bounced")
	cmd.Flags().StringVar(&dsn, "dsn", "", "a delivery status notification as received (RFC 3464), - for stdin")
	cmd.MarkFlagsMutuallyExclusive("email", "dsn")
	cmd.MarkFlagsOneRequired("email", "dsn")
	return cmd
}

// openInput opens the file name, or the command's input for "-".
func openInput(cmd *cobra.Command, name string) (io.ReadCloser, error) {
	if name == "-" {
		return io.NopCloser(cmd.InOrStdin()), nil
	}
	return os.Open(name)
}
