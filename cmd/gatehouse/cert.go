package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"gatehouse/internal/admin"
	"gatehouse/internal/capacity"
	"gatehouse/internal/certs"
	"gatehouse/internal/config"
	"gatehouse/internal/store/bolt"
)

// clientFlags locate the admin API: by default the node whose data
// directory is --data, on the default admin address.
type clientFlags struct {
	dataDir   string
	adminURL  string
	token     string
	tokenFile string
	caFile    string
	jsonOut   bool
	output    string // -o of list commands: table or json
}

func (cf *clientFlags) register(cmd *cobra.Command) {
	f := cmd.PersistentFlags()
	f.StringVar(&cf.dataDir, "data", config.DefaultDataDir, "data directory of the node (for its admin token and certificate)")
	f.StringVar(&cf.adminURL, "admin", envOr("GATEHOUSE_ADMIN", "https://127.0.0.1:9443"), "admin API URL (env GATEHOUSE_ADMIN)")
	f.StringVar(&cf.token, "token", "", "admin bearer token (env GATEHOUSE_TOKEN; default: read from --token-file)")
	f.StringVar(&cf.tokenFile, "token-file", "", "file holding the admin token (default <data>/admin.token)")
	f.StringVar(&cf.caFile, "ca", "", "CA certificate to trust for the admin API (default <data>/admin.crt)")
	f.BoolVar(&cf.jsonOut, "json", false, "print JSON")
}

// outputFlag gives a list command -o/--output table|json; json is --json.
func (cf *clientFlags) outputFlag(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&cf.output, "output", "o", "table", "output format: table or json (snake_case fields, as the admin API answers)")
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// withClient returns a cobra RunE that calls run with the admin client of
// cf (an error building it, such as a bad --output, is returned as is).
func withClient(cf *clientFlags, run func(cmd *cobra.Command, c *admin.Client, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		c, err := cf.client()
		if err != nil {
			return err
		}
		return run(cmd, c, args)
	}
}

func (cf *clientFlags) client() (*admin.Client, error) {
	switch cf.output {
	case "", "table":
	case "json":
		cf.jsonOut = true
	default:
		return nil, fmt.Errorf("--output: %q is not an output format (want table or json)", cf.output)
	}
	token := cf.token
	if token == "" {
		token = os.Getenv("GATEHOUSE_TOKEN")
	}
	if token == "" {
		path := cf.tokenFile
		if path == "" {
			path = filepath.Join(cf.dataDir, "admin.token")
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("admin token: %w (give --token, GATEHOUSE_TOKEN or --data of the node)", err)
		}
		token = strings.TrimSpace(string(b))
	}
	caPath := cf.caFile
	if caPath == "" {
		caPath = filepath.Join(cf.dataDir, "admin.crt")
	}
	ca, err := os.ReadFile(caPath)
	if err != nil && cf.caFile != "" {
		return nil, fmt.Errorf("--ca: %w", err)
	}
	return admin.NewClient(cf.adminURL, token, ca)
}

func newCertCmd(cf *clientFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "cert", Short: "Manage certificates live through the admin API"}
	cf.register(cmd)
	cmd.AddCommand(newCertAddCmd(cf), newCertListCmd(cf), newCertShowCmd(cf), newCertRmCmd(cf), newCertImportCmd(cf), newCertExpiringCmd(cf))
	return cmd
}

// newCertAddCmd is `gatehouse cert add`.
func newCertAddCmd(cf *clientFlags) *cobra.Command {
	var certFile, keyFile string
	add := &cobra.Command{
		Use:   "add --cert FILE [--key FILE]",
		Short: "Install a certificate (leaf, chain and key; the key may be in the cert file)",
		Args:  cobra.NoArgs,
		RunE: withClient(cf, func(cmd *cobra.Command, c *admin.Client, args []string) error {
			certPEM, err := os.ReadFile(certFile)
			if err != nil {
				return fmt.Errorf("--cert: %w", err)
			}
			var keyPEM []byte
			if keyFile != "" {
				if keyPEM, err = os.ReadFile(keyFile); err != nil {
					return fmt.Errorf("--key: %w", err)
				}
			}
			res, err := c.AddCert(cmd.Context(), certPEM, keyPEM)
			if err != nil {
				return fmt.Errorf("%s: %w", certFile, err)
			}
			if cf.jsonOut {
				return printJSON(cmd.OutOrStdout(), res)
			}
			for _, w := range res.Warnings {
				fmt.Fprintln(cmd.ErrOrStderr(), "warning:", w)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "added %s for %s (expires %s)\n", res.Cert.ID, strings.Join(res.Cert.Names, ", "), res.Cert.NotAfter.Format(time.DateOnly))
			return nil
		}),
	}
	add.Flags().StringVar(&certFile, "cert", "", "PEM file with the leaf certificate and its chain (and the key)")
	add.Flags().StringVar(&keyFile, "key", "", "PEM file with the private key")
	_ = add.MarkFlagRequired("cert")
	return add
}

// newCertListCmd is `gatehouse cert list`.
func newCertListCmd(cf *clientFlags) *cobra.Command {
	var limit int
	list := &cobra.Command{
		Use:   "list",
		Short: "List installed certificates with their status",
		Args:  cobra.NoArgs,
		RunE: withClient(cf, func(cmd *cobra.Command, c *admin.Client, args []string) error {
			var all []certs.Info
			after := ""
			for {
				page, err := c.ListCerts(cmd.Context(), after, 1000)
				if err != nil {
					return err
				}
				all = append(all, page...)
				if len(page) < 1000 || (limit > 0 && len(all) >= limit) {
					break
				}
				after = page[len(page)-1].ID
			}
			if limit > 0 && len(all) > limit {
				all = all[:limit]
			}
			if cf.jsonOut {
				return printJSON(cmd.OutOrStdout(), all)
			}
			printCerts(cmd.OutOrStdout(), all)
			return nil
		}),
	}
	cf.outputFlag(list)
	list.Flags().IntVar(&limit, "limit", 0, "show at most this many (0: all)")
	return list
}

// newCertShowCmd is `gatehouse cert show`.
func newCertShowCmd(cf *clientFlags) *cobra.Command {
	show := &cobra.Command{
		Use:   "show HOSTNAME|ID",
		Short: "Show the certificates that serve a hostname (or one bundle by id)",
		Args:  cobra.ExactArgs(1),
		RunE: withClient(cf, func(cmd *cobra.Command, c *admin.Client, args []string) error {
			var list []certs.Info
			var err error
			if strings.Contains(args[0], ".") {
				list, err = c.Lookup(cmd.Context(), args[0])
			} else {
				var info certs.Info
				info, err = c.GetCert(cmd.Context(), args[0])
				list = []certs.Info{info}
			}
			if err != nil {
				return err
			}
			if len(list) == 0 {
				return fmt.Errorf("no certificate serves %s", args[0])
			}
			if cf.jsonOut {
				return printJSON(cmd.OutOrStdout(), list)
			}
			for _, in := range list {
				printDetail(cmd.OutOrStdout(), in)
			}
			return nil
		}),
	}
	return show
}

// newCertRmCmd is `gatehouse cert rm`.
func newCertRmCmd(cf *clientFlags) *cobra.Command {
	rm := &cobra.Command{
		Use:   "rm ID",
		Short: "Remove a certificate bundle; its names stop being served at once",
		Args:  cobra.ExactArgs(1),
		RunE: withClient(cf, func(cmd *cobra.Command, c *admin.Client, args []string) error {
			if err := c.RemoveCert(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed %s\n", args[0])
			return nil
		}),
	}
	return rm
}

// newCertImportCmd is `gatehouse cert import`.
func newCertImportCmd(cf *clientFlags) *cobra.Command {
	var batch int
	var offline bool
	var kekFile string
	imp := &cobra.Command{
		Use:   "import DIR",
		Short: "Import every PEM bundle of a directory; bad files are reported, the rest imported",
		Long: `Import every PEM bundle of a directory through the admin API of a running
node. Each file holds a leaf, its chain and its key, or a .crt/.pem file is
paired with the .key file of the same name. Every refused file is reported
with its reason; the others are imported.

With --offline the store in --data is written directly, for a first bulk
load before the node starts (the node must not be running).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if offline {
				add, done, err := offlineAdder(cmd.Context(), cf.dataDir, kekFile)
				if err != nil {
					return err
				}
				defer done()
				return runImport(cmd.Context(), add, args[0], batch, cmd.OutOrStdout(), cmd.ErrOrStderr())
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			return runImport(cmd.Context(), c.AddCerts, args[0], batch, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	imp.Flags().IntVar(&batch, "batch", 200, "bundles per request")
	imp.Flags().BoolVar(&offline, "offline", false, "write the store in --data directly (node stopped)")
	imp.Flags().StringVar(&kekFile, "kek", "", "key-encryption key file for --offline (default <data>/kek)")
	return imp
}

// newCertExpiringCmd is `gatehouse cert expiring`.
func newCertExpiringCmd(cf *clientFlags) *cobra.Command {
	var within string
	var expLimit int
	expiring := &cobra.Command{
		Use:   "expiring [--within 30d]",
		Short: "List certificates expired or expiring within a duration, soonest first",
		Args:  cobra.NoArgs,
		RunE: withClient(cf, func(cmd *cobra.Command, c *admin.Client, args []string) error {
			list, err := c.Expiring(cmd.Context(), within, expLimit)
			if err != nil {
				return err
			}
			if cf.jsonOut {
				return printJSON(cmd.OutOrStdout(), list)
			}
			printCerts(cmd.OutOrStdout(), list)
			return nil
		}),
	}
	cf.outputFlag(expiring)
	expiring.Flags().StringVar(&within, "within", "30d", "horizon: 30d, 72h, ...")
	expiring.Flags().IntVar(&expLimit, "limit", 1000, "show at most this many")
	return expiring
}

// importSummary is the outcome of an import. An input is one bundle: a
// combined file, or a certificate file paired with its key file.
type importSummary struct {
	Files, Imported, Refused int
}

// batchAdder installs a batch of bundles: the admin API's, or the store's directly.
type batchAdder func(ctx context.Context, items []admin.BatchItem) ([]admin.BatchResult, error)

// offlineAdder opens the store of dataDir for a direct import.
func offlineAdder(ctx context.Context, dataDir, kekFile string) (batchAdder, func(), error) {
	if kekFile == "" {
		kekFile = filepath.Join(dataDir, "kek")
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, nil, err
	}
	kek, err := certs.LoadOrCreateKEK(kekFile)
	if err != nil {
		return nil, nil, err
	}
	st, err := bolt.Open(filepath.Join(dataDir, "gatehouse.db"), bolt.Options{})
	if err != nil {
		return nil, nil, err
	}
	m := certs.NewManager(st, kek, certs.Options{})
	if err := m.Start(ctx); err != nil {
		st.Close()
		return nil, nil, err
	}
	add := func(ctx context.Context, items []admin.BatchItem) ([]admin.BatchResult, error) {
		in := make([]certs.Item, len(items))
		for i, it := range items {
			in[i] = certs.Item{Source: it.Source, CertPEM: []byte(it.CertPEM), KeyPEM: []byte(it.KeyPEM)}
		}
		res := m.AddBatch(ctx, in)
		out := make([]admin.BatchResult, len(res))
		for i, r := range res {
			out[i] = admin.BatchResult{Source: items[i].Source, Warnings: r.Warnings}
			if r.Err != nil {
				out[i].Error = r.Err.Error()
				continue
			}
			info := r.Info
			out[i].Cert = &info
		}
		return out, nil
	}
	return add, func() { m.Close(); st.Close() }, nil
}

// importWorkers is how many batches an import has in flight: while one is
// written to the store, the next is parsed and validated.
const importWorkers = 2

// runImport streams the bundles of dir to add in batches, importWorkers
// batches at a time. Files are read as they are sent, so memory does not
// grow with the size of the directory. Progress (count, rate, ETA) goes to
// errOut every two seconds, the summary to out.
func runImport(ctx context.Context, add batchAdder, dir string, batch int, out, errOut io.Writer) error {
	if batch < 1 || batch > 1000 {
		return errors.New("--batch: must be from 1 to 1000")
	}
	scan, err := certs.OpenDir(dir)
	if err != nil {
		return fmt.Errorf("import of %s: %w", dir, err)
	}
	ir := &importRun{errOut: errOut, start: time.Now(), expected: scan.Groups()}
	ir.lastReport = ir.start
	g, gctx := errgroup.WithContext(ctx)
	batches := make(chan []admin.BatchItem)
	for range importWorkers {
		g.Go(func() error {
			for req := range batches {
				results, err := add(gctx, req)
				if err := ir.record(len(req), results, err); err != nil {
					return err
				}
			}
			return nil
		})
	}
	g.Go(func() error {
		defer close(batches)
		return ir.feed(gctx, scan, batch, batches)
	})
	if err := g.Wait(); err != nil {
		return err
	}
	ir.progress(true)
	sum := ir.sum
	fmt.Fprintf(out, "import of %s: %d inputs, %d imported, %d refused, in %s\n", dir, sum.Files, sum.Imported, sum.Refused, time.Since(ir.start).Round(time.Millisecond))
	if sum.Refused > 0 {
		return fmt.Errorf("%d of %d inputs refused", sum.Refused, sum.Files)
	}
	return nil
}

// importRun is the progress of one import, shared by its workers and its
// directory scan.
type importRun struct {
	mu         sync.Mutex // guards the fields below and writes to errOut
	errOut     io.Writer
	start      time.Time
	sum        importSummary
	sent, done int // bundles handed to add, and answered
	lastReport time.Time
	// expected is the number of bundles the directory should yield: one
	// per base name, less the names that only produced refused files.
	expected int
}

// progress prints a progress line at most every 2 s, and always when final.
// The caller holds mu, or is the only goroutine left.
func (ir *importRun) progress(final bool) {
	now := time.Now()
	if !final && now.Sub(ir.lastReport) < 2*time.Second {
		return
	}
	ir.lastReport = now
	total := max(ir.expected, ir.done)
	if final {
		total = ir.done
	}
	rate := float64(ir.done) / max(now.Sub(ir.start).Seconds(), 0.001)
	eta := time.Duration(float64(total-ir.done)/max(rate, 0.001)) * time.Second
	fmt.Fprintf(ir.errOut, "progress: %d/%d bundles, %.0f/s, ETA %s\n", ir.done, total, rate, eta.Round(time.Second))
}

// record counts the answer to a batch of n bundles and reports its refusals
// and warnings; a failed request stops the import.
func (ir *importRun) record(n int, results []admin.BatchResult, err error) error {
	ir.mu.Lock()
	defer ir.mu.Unlock()
	if err != nil {
		return fmt.Errorf("import stopped after %d of %d bundles (%d imported): %w", ir.done, max(ir.expected, ir.sent), ir.sum.Imported, err)
	}
	for _, r := range results {
		ir.sum.Files++
		if r.Error != "" {
			ir.sum.Refused++
			fmt.Fprintf(ir.errOut, "refused %s: %s\n", r.Source, r.Error)
			continue
		}
		ir.sum.Imported++
		for _, w := range r.Warnings {
			fmt.Fprintf(ir.errOut, "warning %s: %s\n", r.Source, w)
		}
	}
	ir.done += n
	ir.progress(false)
	return nil
}

// feed reads the directory and sends its bundles to batches, batch at a
// time; files that are no bundle are refused here.
func (ir *importRun) feed(ctx context.Context, scan *certs.DirScan, batch int, batches chan<- []admin.BatchItem) error {
	req := make([]admin.BatchItem, 0, batch)
	send := func() error {
		ir.mu.Lock()
		ir.sent += len(req)
		ir.mu.Unlock()
		select {
		case batches <- req:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		req = make([]admin.BatchItem, 0, batch)
		return nil
	}
	for it, fe := range scan.All() {
		if fe != nil {
			ir.mu.Lock()
			ir.sum.Files++
			ir.sum.Refused++
			ir.expected--
			fmt.Fprintf(ir.errOut, "refused %s: %v\n", fe.Path, fe.Err)
			ir.mu.Unlock()
			continue
		}
		item := admin.BatchItem{Source: it.Source, CertPEM: string(it.CertPEM)}
		if it.KeyPEM != nil {
			item.KeyPEM = string(it.KeyPEM)
		}
		if req = append(req, item); len(req) == batch {
			if err := send(); err != nil {
				return err
			}
		}
	}
	if len(req) > 0 {
		return send()
	}
	return nil
}

func printCerts(w io.Writer, list []certs.Info) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATUS\tEXPIRES\tKEY\tSOURCE\tNAMES")
	for _, in := range list {
		names := strings.Join(in.Names, ",")
		if len(names) > 60 {
			names = names[:57] + "..."
		}
		src := in.Source
		if src == "" {
			src = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", in.ID, in.Status, in.NotAfter.Format(time.DateOnly), in.KeyType, src, names)
	}
	tw.Flush()
	fmt.Fprintf(w, "%d certificates\n", len(list))
}

func printDetail(w io.Writer, in certs.Info) {
	fmt.Fprintf(w, "ID:        %s\nStatus:    %s\nNames:     %s\nKey:       %s\nSubject:   %s\nIssuer:    %s\nSerial:    %s\nValid:     %s to %s\nAdded:     %s\n\n",
		in.ID, in.Status, strings.Join(in.Names, ", "), in.KeyType, in.Subject, in.Issuer, in.Serial,
		in.NotBefore.Format(time.RFC3339), in.NotAfter.Format(time.RFC3339), in.AddedAt.Format(time.RFC3339))
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newPoolsCmd(cf *clientFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pools",
		Short: "Show the backend pools and the health of their members",
		Args:  cobra.NoArgs,
		RunE: withClient(cf, func(cmd *cobra.Command, c *admin.Client, args []string) error {
			pools, err := c.Pools(cmd.Context())
			if err != nil {
				return err
			}
			if cf.jsonOut {
				return printJSON(cmd.OutOrStdout(), pools)
			}
			printPools(cmd.OutOrStdout(), pools)
			return nil
		}),
	}
	cf.outputFlag(cmd)
	cf.register(cmd)
	return cmd
}

// printPools writes one line per member under its pool's line.
func printPools(w io.Writer, pools []admin.Pool) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POOL\tMEMBER\tSTATE\tWEIGHT\tZONE\tIN-FLIGHT\tCONNS\tREQUESTS\tFAILURES")
	for _, p := range pools {
		policy := p.Algorithm + ", " + p.Failover
		if p.ActiveZone != "" {
			policy += " (zone " + p.ActiveZone + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t\t\t\t\t\t%d\t%d\n", p.Name, policy, p.Requests, p.Failures)
		for _, m := range p.Members {
			state := "down"
			if m.Up {
				state = "up"
			}
			if m.Drained {
				state += ", drained"
			}
			fmt.Fprintf(tw, "\t%s\t%s\t%d\t%s\t%d\t%d\t\t\n", m.Address, state, m.Weight, orDash(m.Zone), m.InFlight, m.OpenConns)
		}
	}
	tw.Flush()
}

func newReloadCmd(cf *clientFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "reload",
		Short: "Re-read the node's configuration file; a bad file changes nothing",
		Args:  cobra.NoArgs,
		RunE: withClient(cf, func(cmd *cobra.Command, c *admin.Client, args []string) error {
			if err := c.Reload(cmd.Context()); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "reloaded")
			return nil
		}),
	}
	cf.register(cmd)
	return cmd
}

func newLimitsCmd(cf *clientFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "limits",
		Short: "Show every finite resource: usage against limit",
		Args:  cobra.NoArgs,
		RunE: withClient(cf, func(cmd *cobra.Command, c *admin.Client, args []string) error {
			res, err := c.Limits(cmd.Context())
			if err != nil {
				return err
			}
			if cf.jsonOut {
				return printJSON(cmd.OutOrStdout(), res)
			}
			printLimits(cmd.OutOrStdout(), res)
			return nil
		}),
	}
	cf.outputFlag(cmd)
	cf.register(cmd)
	return cmd
}

func printLimits(w io.Writer, res []capacity.Resource) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "RESOURCE\tUSAGE\tLIMIT\tUSED\tLEVEL\tENFORCED\tREFUSED 24H\t")
	for _, r := range res {
		limit, pct := "none", "-"
		if r.Limit > 0 {
			limit = human(r.Limit, r.Unit)
			pct = fmt.Sprintf("%.1f%%", r.Percent)
		}
		enforced, refused := "reported", "-"
		if r.Hard {
			enforced, refused = "refused", fmt.Sprint(r.Refused24h)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.Name, human(r.Usage, r.Unit), limit, pct, r.Level, enforced, refused)
	}
	tw.Flush()
}

func human(v int64, unit string) string {
	if unit != "bytes" {
		return fmt.Sprint(v)
	}
	switch {
	case v >= 1<<30:
		return fmt.Sprintf("%.1fGiB", float64(v)/(1<<30))
	case v >= 1<<20:
		return fmt.Sprintf("%.1fMiB", float64(v)/(1<<20))
	case v >= 1<<10:
		return fmt.Sprintf("%.1fKiB", float64(v)/(1<<10))
	}
	return fmt.Sprintf("%dB", v)
}
