package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/spf13/cobra"
	"gorm.io/gorm"

	"gatewayd/approvals"
	"gatewayd/gateway/audit"
	"gatewayd/gateway/store"
)

func (a *app) auditCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Check, export and purge the audit chain"}
	var receiptsDir string
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Walk the audit chain from its retention checkpoint; print its length and head hash, or the first row that does not fit (exit 1)",
		Long: "Walk the audit chain from its retention checkpoint and print its length and head hash, or name the first " +
			"row that does not fit (exit 1). With --receipts DIR, every receipt file (*.json) of DIR must verify and " +
			"its decision's signed anchor (the chain's head when the decision was prepared) must be a row of this " +
			"chain: a row edited before an anchor is named, and a chain rewritten up to an anchor is detected.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			db, err := store.OpenExisting(cmd.Context(), a.cfg.DB)
			if err != nil {
				return err
			}
			defer store.Close(db)
			res, verr := audit.Verify(cmd.Context(), db)
			var broken *audit.BrokenRowError
			if verr != nil && !errors.As(verr, &broken) {
				return verr
			}
			var problems []string
			if receiptsDir != "" {
				n, p, err := checkReceiptAnchors(cmd.Context(), db, receiptsDir, broken, res.Checkpoint)
				if err != nil {
					return err
				}
				problems = p
				if len(p) == 0 {
					defer fmt.Fprintf(a.stdout, "%d receipts: each anchor is a row of this chain\n", n)
				}
			}
			for _, p := range problems {
				fmt.Fprintln(a.stdout, p)
			}
			if broken != nil {
				return &exitError{code: 1, err: fmt.Errorf("audit chain BROKEN after %d good rows: %w", res.Rows, verr)}
			}
			if len(problems) > 0 {
				return &exitError{code: 1, err: fmt.Errorf("audit chain does not hold %d receipt anchor(s)", len(problems))}
			}
			fmt.Fprintf(a.stdout, "audit chain OK: %d rows, head %s\n", res.Rows, res.Head)
			if res.Unlinked > 0 {
				fmt.Fprintf(a.stdout, "%d rows committed in the last %s wait to be linked (their content is intact)\n",
					res.Unlinked, audit.LinkBound)
			}
			if cp := res.Checkpoint; cp.Seq > 0 {
				fmt.Fprintf(a.stdout, "from the retention checkpoint: rows 1 to %d purged (%d in all), last purged row's hash %s\n",
					cp.Seq, cp.Purged, cp.Hash)
			}
			return nil
		},
	}
	verify.Flags().StringVar(&receiptsDir, "receipts", "", "folder of receipt files whose anchors must be rows of the chain")
	cmd.AddCommand(verify)
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
			db, err := store.OpenExisting(cmd.Context(), a.cfg.DB)
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

// checkReceiptAnchors checks every receipt of dir: it verifies, and its anchor is a row of the chain with the
// same hash. broken is the first row that does not fit (nil for an intact chain): a receipt anchored at or
// after it proves that row was changed after the receipt's decision. Rows up to the retention checkpoint were
// purged: an anchor before it can no longer be checked (and is reported), one at it is checked against it.
func checkReceiptAnchors(ctx context.Context, db *gorm.DB, dir string, broken *audit.BrokenRowError, cp audit.Checkpoint) (int, []string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return 0, nil, err
	}
	if _, err := os.Stat(dir); err != nil {
		return 0, nil, fmt.Errorf("--receipts: %w", err)
	}
	sort.Strings(files)
	var problems []string
	for _, f := range files {
		rc, err := readReceipt(f)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		d, err := approvals.VerifyReceipt(rc)
		if err != nil {
			problems = append(problems, fmt.Sprintf("receipt %s does not verify: %v", f, err))
			continue
		}
		an := d.AuditAnchor
		if broken != nil && broken.Seq <= an.Seq {
			problems = append(problems, fmt.Sprintf("receipt %s (decision %s) anchors row %d: row %d before it was changed after the decision (%s)",
				f, d.DecisionID, an.Seq, broken.Seq, broken.Reason))
			continue
		}
		if an.Seq > 0 && an.Seq < cp.Seq {
			problems = append(problems, fmt.Sprintf("receipt %s (decision %s) anchors row %d, purged under the retention policy (checkpoint at row %d): not checkable",
				f, d.DecisionID, an.Seq, cp.Seq))
			continue
		}
		hash := cp.Hash
		if an.Seq != cp.Seq || cp.Seq == 0 {
			if hash, err = audit.RowAnchor(ctx, db, an.Seq); err != nil {
				return 0, nil, err
			}
		}
		switch {
		case hash == "":
			problems = append(problems, fmt.Sprintf("receipt %s (decision %s) anchors row %d, which the chain does not have", f, d.DecisionID, an.Seq))
		case hash != an.Hash:
			problems = append(problems, fmt.Sprintf("receipt %s (decision %s) anchors row %d with hash %s, the chain has %s: the rows up to %d were rewritten",
				f, d.DecisionID, an.Seq, an.Hash, hash, an.Seq))
		}
	}
	return len(files), problems, nil
}
