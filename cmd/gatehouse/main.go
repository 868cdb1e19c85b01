// Command gatehouse is the Gatehouse HTTPS edge and status portal, and the
// CLI for its admin API.
//
//	gatehouse demo                      run the quickstart
//	gatehouse serve --config FILE       run from a configuration file
//	gatehouse cert add|list|show|rm|import   manage certificates live
//	gatehouse route add|list|rm|set     manage dynamic routes live
//	gatehouse hostname add|list|show|retry|rm   customer hostnames with ACME certificates
//	gatehouse upgrade --pid-file FILE   replace the server with the binary at its path
//	gatehouse token add|list|rotate|rm    named admin tokens with scopes
//	gatehouse audit [--since 1h]        who changed what through the admin API
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRoot().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "gatehouse:", err)
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "gatehouse",
		Short:         "The HTTPS edge for many customer domains, with a status portal",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	cf := &clientFlags{}
	root.AddCommand(newServeCmd(), newDemoCmd(), newCertCmd(cf), newRouteCmd(cf), newHostnameCmd(cf), newPoolsCmd(cf), newReloadCmd(cf), newLimitsCmd(cf),
		newIncidentCmd(cf), newMaintenanceCmd(cf), newComponentCmd(cf), newStatusCmd(cf), newStoreCmd(), newUpgradeCmd(cf), newDrainCmd(cf), newUndrainCmd(cf), newTokenCmd(cf), newAuditCmd(cf))
	return root
}
