package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/spf13/cobra"

	"gatewayd/gateway"
	"gatewayd/gateway/identity"
	"gatewayd/gateway/records"
	"gatewayd/gateway/store"
)

// demoRoles are the people of the walk-through, one invitation each.
var demoRoles = []struct{ role, name, proID string }{
	{identity.RoleRequester, "Dr Claire Martin (demo)", "10001234567"},
	{identity.RoleOfficer, "Paul Durand, data officer (demo)", ""},
	{identity.RoleStaff, "Nadia Benali, records desk (demo)", ""},
	{identity.RoleAdmin, "Admin (demo)", ""},
	{identity.RoleDPO, "Inès Moreau, data-protection officer (demo)", ""},
}

func (a *app) demoSetupCommand() *cobra.Command {
	var samples string
	cmd := &cobra.Command{
		Use:   "demo-setup",
		Short: "On a fresh data directory: import the sample bundles and print one invitation link per role",
		Long: `For trying gatewayd on one machine: imports the synthetic sample bundles shipped in the repository
(testdata/sample) and prints one invitation link per role (requester, officer, staff, admin, dpo) and a sample
patient identifier to file a request for. It refuses a database that already has users or invitations. Serve with
--dev-allow-software-keys so that the officer may sign with the browser's own passkey. Never use it with
real data.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			db, master, err := gateway.Start(ctx, &a.cfg, a.log)
			if err != nil {
				return err
			}
			defer store.Close(db)
			var users int64
			if err := db.WithContext(ctx).Raw("SELECT (SELECT COUNT(*) FROM users) + (SELECT COUNT(*) FROM invitations)").Scan(&users).Error; err != nil {
				return err
			}
			if users > 0 {
				return errors.New("demo-setup: this database already has users or invitations; it only prepares a fresh data directory")
			}
			files, err := filepath.Glob(filepath.Join(samples, "*.json"))
			if err != nil || len(files) == 0 {
				return fmt.Errorf("demo-setup: no sample bundle (*.json) in %s", samples)
			}
			sort.Strings(files)
			rec, err := records.New(db, master)
			if err != nil {
				return err
			}
			rep, err := rec.Import(ctx, files, records.ImportOptions{Actor: "cli"})
			if err != nil {
				return fmt.Errorf("demo-setup: import: %w", err)
			}
			if len(rep.Failed) > 0 {
				return fmt.Errorf("demo-setup: %d sample bundle(s) refused", len(rep.Failed))
			}
			id, err := identity.New(identity.Config{DB: db,
				Origins:       map[string]string{identity.Intake: a.cfg.PublicIntakeURL, identity.Console: a.cfg.PublicConsoleURL},
				InvitationTTL: a.cfg.InvitationTTL})
			if err != nil {
				return err
			}
			out := a.stdout
			fmt.Fprintf(out, "Demo data: %d synthetic patients imported from %s (Synthea; no real person).\n\n", len(files), samples)
			fmt.Fprintln(out, "Open each link in its own browser profile (or a private window): each person registers a passkey.")
			for _, r := range demoRoles {
				inv, err := id.Invite(ctx, "cli", identity.NewInvitation{Role: r.role, DisplayName: r.name, ProfessionalID: r.proID})
				if err != nil {
					return fmt.Errorf("demo-setup: invite %s: %w", r.role, err)
				}
				fmt.Fprintf(out, "  %-9s %s\n", r.role, inv.Link)
			}
			// Printed to the terminal of the person setting up the demo, never logged: a synthetic patient.
			sys, val, err := sampleIdentifier(files[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "\nFile a request (as the requester) for this sample patient:\n  system: %s\n  value:  %s\n", sys, val)
			fmt.Fprintln(out, "\nThen: the officer reviews and signs on the console, the requester retrieves the extract once.")
			return nil
		},
	}
	cmd.Flags().StringVar(&samples, "samples", "testdata/sample", "folder of sample FHIR Bundles to import")
	return cmd
}

// sampleIdentifier reads the Synthea identifier of a sample bundle's Patient.
func sampleIdentifier(path string) (string, string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", "", err
	}
	var bundle struct {
		Entry []struct {
			Resource struct {
				ResourceType string `json:"resourceType"`
				Identifier   []struct {
					System string `json:"system"`
					Value  string `json:"value"`
				} `json:"identifier"`
			} `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(b, &bundle); err != nil {
		return "", "", fmt.Errorf("sample bundle: %w", err)
	}
	for _, e := range bundle.Entry {
		if e.Resource.ResourceType == "Patient" {
			for _, id := range e.Resource.Identifier {
				if id.System == "https://github.com/synthetichealth/synthea" {
					return id.System, id.Value, nil
				}
			}
		}
	}
	return "", "", errors.New("sample bundle: no Synthea identifier on its Patient")
}
