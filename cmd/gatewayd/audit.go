package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"gatewayd/gateway/audit"
	"gatewayd/gateway/store"
)

func (a *app) auditCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Check, export and purge the audit chain"}
	cmd.AddCommand(&cobra.Command{
		Use:   "verify",
		Short: "Walk the audit chain from its retention checkpoint; print its length and head hash, or the first row that does not fit (exit 1)",
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
			if cp := res.Checkpoint; cp.Seq > 0 {
				fmt.Fprintf(a.stdout, "from the retention checkpoint: rows 1 to %d purged (%d in all), last purged row's hash %s\n",
					cp.Seq, cp.Purged, cp.Hash)
			}
			return nil
		},
	})
	cmd.AddCommand(a.auditExportCommand(), a.auditPurgeCommand())
	return cmd
}

func (a *app) auditExportCommand() *cobra.Command {
	var since, out string
	cmd := &cobra.Command{
		Use:   "export --since TIME [--out FILE]",
		Short: "Write the audit rows from TIME as JSON Lines (for a SIEM); each line rehashes to its row",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			from, err := parseSince(since)
			if err != nil {
				return err
			}
			db, err := store.Open(cmd.Context(), a.cfg.DB)
			if err != nil {
				return err
			}
			defer store.Close(db)
			var w io.Writer = a.stdout
			if out != "" {
				f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
				if err != nil {
					return fmt.Errorf("--out: %w", err)
				}
				defer f.Close()
				w = f
			}
			n, err := audit.Export(cmd.Context(), db, from, w)
			if err != nil {
				return err
			}
			// Who took the chain out, and how much of it, is itself in the chain.
			if err := audit.Record(cmd.Context(), db, audit.Event{Actor: "cli", Action: "audit.exported", Subject: "audit",
				Details: map[string]any{"rows": n, "since": from.UTC().Format(audit.TimeLayout)}}); err != nil {
				return err
			}
			fmt.Fprintf(a.stderr, "exported %d rows\n", n)
			return nil
		},
	}
	cmd.Flags().StringVar(&since, "since", "", "first time to export: RFC 3339 (2026-01-31T00:00:00Z) or a date (2026-01-31, UTC)")
	cmd.Flags().StringVar(&out, "out", "", "file to write (mode 0600, must not exist); default standard output")
	return cmd
}

func parseSince(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, fmt.Errorf("--since: give a time (RFC 3339) or a date (YYYY-MM-DD)")
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("--since: %q is neither RFC 3339 (2026-01-31T00:00:00Z) nor a date (2026-01-31)", s)
}

func (a *app) auditPurgeCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "purge",
		Short: "Purge the audit rows older than --audit-retention-months now (serve does it on its own)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if a.cfg.AuditRetentionMonths == 0 {
				return fmt.Errorf("--audit-retention-months is 0: the audit is kept forever, nothing to purge")
			}
			db, err := store.Open(cmd.Context(), a.cfg.DB)
			if err != nil {
				return err
			}
			defer store.Close(db)
			now := time.Now()
			res, err := audit.Purge(cmd.Context(), db, a.cfg.AuditCutoff(now), now, "cli")
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "purged %d audit rows (%d summarised for patients' access histories); checkpoint at row %d\n",
				res.Purged, res.Summarised, res.Checkpoint.Seq)
			return nil
		},
	}
}
