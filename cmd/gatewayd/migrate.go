package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"gatewayd/gateway"
	"gatewayd/gateway/store"
)

func (a *app) migrateCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "migrate", Short: "Apply or list the database schema migrations"}
	cmd.AddCommand(&cobra.Command{
		Use:   "up",
		Short: "Apply every pending migration",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			db, err := store.Open(cmd.Context(), a.cfg.DB)
			if err != nil {
				return err
			}
			defer store.Close(db)
			applied, err := gateway.Migrate(cmd.Context(), db, "cli")
			for _, m := range applied {
				fmt.Fprintf(a.stdout, "applied %04d_%s\n", m.Version, m.Name)
			}
			if err != nil {
				return err
			}
			if len(applied) == 0 {
				fmt.Fprintln(a.stdout, "nothing to apply: the schema is up to date")
			}
			return nil
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "status",
		Short: "List the migrations and whether each is applied",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Read-only: a mistyped --db gets one clear line, never a new empty database.
			db, err := store.OpenExisting(cmd.Context(), a.cfg.DB)
			if err != nil {
				return err
			}
			defer store.Close(db)
			st, err := store.Status(cmd.Context(), db)
			if err != nil {
				return err
			}
			for _, m := range st {
				state := "pending"
				if m.AppliedAt != nil {
					state = "applied " + m.AppliedAt.UTC().Format("2006-01-02 15:04:05Z")
				}
				fmt.Fprintf(a.stdout, "%04d_%-20s %s\n", m.Version, m.Name, state)
			}
			return nil
		},
	})
	return cmd
}
