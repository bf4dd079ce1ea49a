package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"gatewayd/gateway/keys"
)

func (a *app) keysCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "keys", Short: "Manage the master key file"}
	cmd.AddCommand(&cobra.Command{
		Use:   "init",
		Short: "Write a new master key file (mode 0600); never overwrites one",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := keys.Init(a.cfg.KeyFile); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "wrote a new master key to %s (mode 0600). Back it up apart from the database: without it the records cannot be read.\n", a.cfg.KeyFile)
			return nil
		},
	})
	return cmd
}
