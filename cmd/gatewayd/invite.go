package main

import (
	"fmt"

	"gatewayd/gateway"

	"github.com/spf13/cobra"

	"gatewayd/gateway/identity"
	"gatewayd/gateway/store"
)

func (a *app) inviteCommand() *cobra.Command {
	var role, name, proID, samePerson string
	cmd := &cobra.Command{
		Use:   "invite",
		Short: "Make a one-time invitation link for a role (this is how the first admin is made)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			svc, closeDB, err := a.identity(cmd)
			if err != nil {
				return err
			}
			defer closeDB()
			inv, err := svc.Invite(cmd.Context(), "cli", identity.NewInvitation{Role: role, DisplayName: name, ProfessionalID: proID,
				SamePersonAs: samePerson})
			if err != nil {
				return fmt.Errorf("invite: %w", err)
			}
			fmt.Fprintf(a.stdout, "Invitation (role %s), valid until %s, one use:\n%s\n", inv.Role,
				inv.ExpiresAt.Local().Format("2006-01-02 15:04 MST"), inv.Link)
			return nil
		},
	}
	cmd.Flags().StringVar(&role, "role", "", "requester, officer, staff or admin")
	cmd.Flags().StringVar(&name, "name", "", "the person's display name")
	cmd.Flags().StringVar(&proID, "professional-id", "", "professional identifier (RPPS number for French doctors), optional")
	cmd.Flags().StringVar(&samePerson, "same-person-as", "", "user id of this person's existing account (needed when the professional id is already an account's)")
	cmd.MarkFlagRequired("role")
	cmd.MarkFlagRequired("name")
	return cmd
}

// identity opens and migrates the database and builds the identity service on the configured public URLs.
func (a *app) identity(cmd *cobra.Command) (*identity.Service, func(), error) {
	db, err := gateway.OpenMigrated(cmd.Context(), &a.cfg, "cli")
	if err != nil {
		return nil, nil, err
	}
	svc, err := identity.New(identity.Config{DB: db,
		Origins:       map[string]string{identity.Intake: a.cfg.PublicIntakeURL, identity.Console: a.cfg.PublicConsoleURL},
		InvitationTTL: a.cfg.InvitationTTL})
	if err != nil {
		store.Close(db)
		return nil, nil, err
	}
	return svc, func() { store.Close(db) }, nil
}
