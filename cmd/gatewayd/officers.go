package main

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"gatewayd/gateway/identity"
	"gatewayd/gateway/store"
)

func (a *app) officersCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "officers", Short: "The officers' key register, for verifying receipts offline"}
	var out string
	export := &cobra.Command{
		Use:   "export",
		Short: "Write every officer credential ever enrolled (keys, attestations, audit positions) as JSON",
		Long: "Write the officers' key register: every officer credential ever enrolled, revoked ones included, with " +
			"its COSE public key, the officer's name and professional id, enrolment and revocation times, AAGUID, the " +
			"attestation statement kept at registration, and the audit-chain rows of its enrolment and revocation. " +
			"`gatewayd receipt verify --officers FILE` checks a receipt's key against it. Holds no health data.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			db, err := store.OpenExisting(cmd.Context(), a.cfg.DB)
			if err != nil {
				return err
			}
			defer store.Close(db)
			reg, err := identity.ExportOfficers(cmd.Context(), db, time.Now())
			if err != nil {
				return err
			}
			b, err := json.MarshalIndent(reg, "", "  ")
			if err != nil {
				return err
			}
			b = append(b, '\n')
			if out == "" || out == "-" {
				_, err = a.stdout.Write(b)
				return err
			}
			if err := os.WriteFile(out, b, 0o644); err != nil {
				return fmt.Errorf("write officers' register: %w", err)
			}
			return nil
		},
	}
	export.Flags().StringVarP(&out, "out", "o", "", "file to write (default: standard output)")
	cmd.AddCommand(export)
	return cmd
}
