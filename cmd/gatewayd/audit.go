package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"gatewayd/gateway/audit"
	"gatewayd/gateway/store"
)

func (a *app) auditCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Check and read the audit chain"}
	cmd.AddCommand(&cobra.Command{
		Use:   "verify",
		Short: "Walk the audit chain; print its length and head hash, or the first row that does not fit (exit 1)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			db, err := store.Open(cmd.Context(), a.cfg.DB)
			if err != nil {
				return err
			}
			defer store.Close(db)
			res, err := audit.Verify(cmd.Context(), db)
			if errors.Is(err, audit.ErrBroken) {
				return &exitError{code: 1, err: fmt.Errorf("audit chain BROKEN after %d good rows: %w", res.Rows, err)}
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "audit chain OK: %d rows, head %s\n", res.Rows, res.Head)
			return nil
		},
	})
	return cmd
}
