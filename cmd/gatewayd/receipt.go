package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"gatewayd/approvals"
	"gatewayd/gateway/keys"
	"gatewayd/gateway/store"
	"gatewayd/gateway/strictjson"
)

// maxReceiptSize bounds what `receipt verify` reads: a receipt is a few kilobytes.
const maxReceiptSize = 1 << 20

func (a *app) receiptCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "receipt", Short: "Export a signed decision's receipt, or verify one offline"}

	var out string
	export := &cobra.Command{
		Use:   "export ID",
		Short: "Write the receipt of a decision (or of a request with a single one) as a JSON file",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			master, err := keys.Load(a.cfg.KeyFile)
			if err != nil {
				return err
			}
			db, err := store.Open(cmd.Context(), a.cfg.DB)
			if err != nil {
				return err
			}
			defer store.Close(db)
			if err := master.Bind(cmd.Context(), db); err != nil {
				return err
			}
			rc, err := approvals.LoadReceipt(cmd.Context(), db, master.Derive(keys.PurposeApprovals), args[0])
			if err != nil {
				return err
			}
			b, err := json.MarshalIndent(rc, "", "  ")
			if err != nil {
				return err
			}
			path := out
			if path == "" {
				path = "receipt-" + rc.DecisionID + ".json"
			}
			// A receipt names a patient: readable by its owner only, like the key file.
			if err := os.WriteFile(path, append(b, '\n'), 0o600); err != nil {
				return fmt.Errorf("write receipt: %w", err)
			}
			fmt.Fprintf(a.stdout, "wrote the receipt of decision %s to %s\n", rc.DecisionID, filepath.Clean(path))
			return nil
		},
	}
	export.Flags().StringVarP(&out, "out", "o", "", "file to write (default receipt-<decision id>.json)")

	verify := &cobra.Command{
		Use:   "verify FILE",
		Short: "Check a receipt with nothing but the file; print the decision (exit 0) or what fails (exit 1)",
		Args:  cobra.ExactArgs(1),
		// Offline on purpose: no configuration, database, key file or network. This replaces the root's
		// configuration loading, so that nothing the check does not need can make it fail.
		PersistentPreRunE: func(*cobra.Command, []string) error { return nil },
		RunE: func(cmd *cobra.Command, args []string) error {
			rc, err := readReceipt(args[0])
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			d, err := approvals.VerifyReceipt(rc)
			if err != nil {
				return &exitError{code: 1, err: fmt.Errorf("receipt %s FAILS: %w", args[0], err)}
			}
			fmt.Fprintf(a.stdout, "Receipt OK: the signature of credential %x verifies over this decision (user present and verified, RP id %s, origin %s).\n\n",
				[]byte(rc.CredentialID), rc.RPID, rc.Origin)
			summary := d.Summary()
			fmt.Fprint(a.stdout, summary)
			if rc.Shown != "" && rc.Shown != summary {
				fmt.Fprintf(a.stdout, "\nWhat the review page showed the officer:\n%s\n", rc.Shown)
			}
			return nil
		},
	}
	cmd.AddCommand(export, verify)
	return cmd
}

func readReceipt(path string) (approvals.Receipt, error) {
	f, err := os.Open(path)
	if err != nil {
		return approvals.Receipt{}, fmt.Errorf("read receipt: %w", err)
	}
	defer f.Close()
	var buf bytes.Buffer
	if n, err := buf.ReadFrom(io.LimitReader(f, maxReceiptSize+1)); err != nil {
		return approvals.Receipt{}, fmt.Errorf("read receipt: %w", err)
	} else if n > maxReceiptSize {
		return approvals.Receipt{}, errors.New("read receipt: larger than 1 MiB, not a receipt")
	}
	var rc approvals.Receipt
	// Strict first: a duplicate or case-variant name would otherwise be read as the one it shadows.
	if err := strictjson.Check(buf.Bytes(), strictjson.Names(rc)...); err != nil {
		return approvals.Receipt{}, fmt.Errorf("receipt %s is not a receipt file: %w", path, err)
	}
	dec := json.NewDecoder(&buf)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rc); err != nil {
		return approvals.Receipt{}, fmt.Errorf("receipt %s is not a receipt file: %w", path, err)
	}
	return rc, nil
}
