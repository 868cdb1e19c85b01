package main

import (
	"io"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"gatehouse/internal/config"
	"gatehouse/internal/node"
	"gatehouse/internal/server"
)

func newServeCmd() *cobra.Command {
	var path string
	var newStore bool
	up := node.UpgradeOptions{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the edge from a configuration file",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := config.Load(path)
			if err != nil {
				return err
			}
			n, err := node.New(cmd.Context(), cfg, node.Options{
				Logger:   newLogger(cfg.Log, os.Stderr),
				Reload:   func() (*config.Config, error) { return config.Load(path) },
				NewStore: newStore,
				Upgrade:  &up,
			})
			if err != nil {
				return err
			}
			return n.Run(cmd.Context())
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "gatehouse.yaml", "configuration file")
	cmd.Flags().BoolVar(&newStore, "new-store", false, "start with a new, empty store although the data directory's store held data (it is missing, empty or damaged and will not be restored from a backup); the old file is kept as gatehouse.db.damaged-TIME")
	cmd.Flags().StringVar(&up.PIDFile, "pid-file", "", "write the PID of the serving process to this file; a binary upgrade replaces it with the new process's")
	cmd.Flags().DurationVar(&up.Timeout, "upgrade-timeout", server.DefaultUpgradeTimeout, "how long a new binary has to become ready on SIGUSR2 before the upgrade is abandoned")
	return cmd
}

func newLogger(lc config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(lc.Level))
	opts := &slog.HandlerOptions{Level: level}
	if lc.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
