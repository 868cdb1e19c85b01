package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"gatehouse/internal/config"
	"gatehouse/internal/demo"
	"gatehouse/internal/node"
)

func newDemoCmd() *cobra.Command {
	var dataDir string
	var withACME bool
	addrs := demo.Addrs{}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the quickstart: a local CA, three tenant hostnames, demo backends, the status page",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDemoWith(cmd.Context(), dataDir, addrs, cmd.OutOrStdout(), withACME)
		},
	}
	f := cmd.Flags()
	f.StringVar(&dataDir, "data", config.DefaultDataDir, "data directory")
	f.StringVar(&addrs.HTTPS, "https", "127.0.0.1:8443", "public HTTPS listener")
	f.StringVar(&addrs.Status, "status", "127.0.0.1:8080", "status page listener")
	f.StringVar(&addrs.Admin, "admin", "127.0.0.1:9443", "admin API listener")
	f.BoolVar(&withACME, "acme", false, "also certify a customer hostname through an in-process ACME CA (no internet needed)")
	return cmd
}

func runDemo(ctx context.Context, dataDir string, addrs demo.Addrs, out io.Writer) error {
	return runDemoWith(ctx, dataDir, addrs, out, false)
}

func runDemoWith(ctx context.Context, dataDir string, addrs demo.Addrs, out io.Writer, withACME bool) error {
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return fmt.Errorf("--data %s: %w", dataDir, err)
	}
	ca, err := demo.LoadOrCreateCA(abs)
	if err != nil {
		return fmt.Errorf("demo CA: %w", err)
	}
	backends, err := demo.StartBackends()
	if err != nil {
		return err
	}
	defer backends.Close(context.Background())
	cfg, err := demo.Config(abs, addrs, backends.Members)
	if err != nil {
		return fmt.Errorf("demo config: %w", err)
	}
	var acmeDemo *demoACME
	if withACME {
		if acmeDemo, err = startDemoACME(cfg); err != nil {
			return err
		}
		defer acmeDemo.close()
	}
	log := newLogger(cfg.Log, os.Stderr)
	n, err := node.New(ctx, cfg, node.Options{Logger: log})
	if err != nil {
		return err
	}
	// Install a certificate for each tenant unless one is already served.
	for _, t := range demo.Tenants {
		if len(n.Certs().Lookup(t.Example)) > 0 {
			continue
		}
		certPEM, keyPEM, err := ca.Issue(t.Host)
		if err != nil {
			return err
		}
		info, _, err := n.Certs().Add(ctx, certPEM, keyPEM)
		if err != nil {
			return fmt.Errorf("installing the demo certificate for %s: %w", t.Host, err)
		}
		log.Info("installed demo certificate", "host", t.Host, "id", info.ID)
	}
	printDemoHelp(out, n, ca.Path, abs, acmeDemo)
	return n.Run(ctx)
}

func printDemoHelp(out io.Writer, n *node.Node, caPath, dataDir string, acmeDemo *demoACME) {
	https := n.Addr("https")
	host, port, _ := strings.Cut(https, ":")
	var b strings.Builder
	fmt.Fprintf(&b, "\nGatehouse demo is running. Try:\n\n")
	for _, t := range demo.Tenants {
		fmt.Fprintf(&b, "  curl --resolve %s:%s:%s --cacert %s https://%s:%s/\n", t.Example, port, host, caPath, t.Example, port)
	}
	fmt.Fprintf(&b, "  curl --resolve other.uni-c.test:%s:%s --cacert %s https://other.uni-c.test:%s/   # wildcard\n", port, host, caPath, port)
	if acmeDemo != nil {
		acmeDemo.run(&b, n)
	}
	fmt.Fprintf(&b, "\nStatus page:  http://%s/\n", n.Addr("status"))
	fmt.Fprintf(&b, "Admin API:    https://%s/ (token in %s)\n", n.Addr("admin"), filepath.Join(dataDir, "admin.token"))
	fmt.Fprintf(&b, "CLI:          go run ./cmd/gatehouse cert list --data %s\n", dataDir)
	fmt.Fprintf(&b, "\nPress Ctrl-C to stop.\n")
	fmt.Fprint(out, b.String())
}
