package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"gatehouse/internal/acmetest"
	"gatehouse/internal/config"
	"gatehouse/internal/hostnames"
	"gatehouse/internal/node"
)

// demoACMEHost is the customer hostname gatehouse demo --acme certifies.
const demoACMEHost = "shop.uni-d.test"

// demoACME is the quickstart's in-process ACME CA.
type demoACME struct {
	ca       *acmetest.CA
	rootPath string
}

// startDemoACME starts the CA and adds an acme: section using it (TLS-ALPN-01
// on the demo's HTTPS listener) to cfg.
func startDemoACME(cfg *config.Config) (*demoACME, error) {
	ca, err := acmetest.Start(acmetest.Options{})
	if err != nil {
		return nil, fmt.Errorf("demo ACME CA: %w", err)
	}
	d := &demoACME{ca: ca, rootPath: filepath.Join(cfg.DataDir, "acme-root.pem")}
	caFile := filepath.Join(cfg.DataDir, "acme-directory-ca.pem")
	if err := os.WriteFile(caFile, ca.ServerCAPEM(), 0o600); err != nil {
		ca.Close()
		return nil, err
	}
	if err := os.WriteFile(d.rootPath, ca.RootPEM(), 0o644); err != nil {
		ca.Close()
		return nil, err
	}
	cfg.ACME = &config.ACME{Directories: []string{ca.URL()}, CAFile: caFile, Challenges: []string{"tls-alpn-01"}, Email: "ops@uni-d.test"}
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		ca.Close()
		return nil, err
	}
	return d, nil
}

func (d *demoACME) close() { d.ca.Close() }

// run points the CA at the node's HTTPS listener, registers the demo
// hostname and writes its states until it is active, then how to reach it.
func (d *demoACME) run(w io.Writer, n *node.Node) {
	https := n.Addr("https")
	host, p, _ := net.SplitHostPort(https)
	port, _ := strconv.Atoi(p)
	d.ca.SetPorts(0, port)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// The CA is new on every run: certify the hostname afresh.
	_ = n.Hostnames().Remove(ctx, demoACMEHost)
	fmt.Fprintf(w, "\nACME: gatehouse hostname add %s --tenant uni-d --pool uni-a (through an in-process test CA)\n", demoACMEHost)
	if _, err := n.Hostnames().Add(ctx, hostnames.Hostname{Name: demoACMEHost, Tenant: "uni-d", Pool: "uni-a"}); err != nil {
		fmt.Fprintf(w, "  adding the hostname failed: %v\n", err)
		return
	}
	last := hostnames.State("")
	for ctx.Err() == nil {
		h, err := n.Hostnames().Get(ctx, demoACMEHost)
		if err == nil && h.State != last {
			fmt.Fprintf(w, "  %s: %s", demoACMEHost, h.State)
			if h.Reason != "" {
				fmt.Fprintf(w, " (%s)", h.Reason)
			}
			if h.State == hostnames.Active {
				fmt.Fprintf(w, ", certificate %s valid until %s, renews at %s", h.Serial, h.NotAfter.UTC().Format(time.DateTime), h.NextAttempt.UTC().Format(time.DateTime))
			}
			fmt.Fprintln(w)
			last = h.State
		}
		if last == hostnames.Active || last == hostnames.Failed {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	fmt.Fprintf(w, "  curl --resolve %s:%s:%s --cacert %s https://%s:%s/   # ACME-issued\n", demoACMEHost, p, host, d.rootPath, demoACMEHost, p)
}
