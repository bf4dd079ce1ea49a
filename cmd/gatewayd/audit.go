package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/spf13/cobra"
	"gorm.io/gorm"

	"gatewayd/approvals"
	"gatewayd/gateway/audit"
	"gatewayd/gateway/store"
)

func (a *app) auditCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Check and read the audit chain"}
	var receiptsDir string
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Walk the audit chain; print its length and head hash, or the first row that does not fit (exit 1)",
		Long: "Walk the audit chain and print its length and head hash, or name the first row that does not fit " +
			"(exit 1). With --receipts DIR, every receipt file (*.json) of DIR must verify and its decision's signed " +
			"anchor (the chain's head when the decision was prepared) must be a row of this chain: a row edited " +
			"before an anchor is named, and a chain rewritten up to an anchor is detected.",
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
				n, p, err := checkReceiptAnchors(cmd.Context(), db, receiptsDir, broken)
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
			return nil
		},
	}
	verify.Flags().StringVar(&receiptsDir, "receipts", "", "folder of receipt files whose anchors must be rows of the chain")
	cmd.AddCommand(verify)
	return cmd
}

// checkReceiptAnchors checks every receipt of dir: it verifies, and its anchor is a row of the chain with the
// same hash. broken is the first row that does not fit (nil for an intact chain): a receipt anchored at or
// after it proves that row was changed after the receipt's decision.
func checkReceiptAnchors(ctx context.Context, db *gorm.DB, dir string, broken *audit.BrokenRowError) (int, []string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return 0, nil, err
	}
	if len(files) == 0 {
		if _, err := os.Stat(dir); err != nil {
			return 0, nil, fmt.Errorf("--receipts: %w", err)
		}
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
		hash, err := audit.RowAnchor(ctx, db, an.Seq)
		if err != nil {
			return 0, nil, err
		}
		switch {
		case hash == "":
			problems = append(problems, fmt.Sprintf("receipt %s (decision %s) anchors row %d, which the chain no longer has", f, d.DecisionID, an.Seq))
		case hash != an.Hash:
			problems = append(problems, fmt.Sprintf("receipt %s (decision %s) anchors row %d with hash %s, the chain has %s: the rows up to %d were rewritten",
				f, d.DecisionID, an.Seq, an.Hash, hash, an.Seq))
		}
	}
	return len(files), problems, nil
}
