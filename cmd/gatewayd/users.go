package main

import (
	"errors"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"gatewayd/gateway/identity"
	"gatewayd/gateway/store"
)

func (a *app) usersCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "users", Short: "List users, suspend one, revoke a key"}
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List users and their keys",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			svc, closeDB, err := a.identity(cmd)
			if err != nil {
				return err
			}
			defer closeDB()
			// Every user, page by page (newest first).
			var users []identity.UserWithCredentials
			for p := (store.Page{}); ; {
				page, err := svc.Users(cmd.Context(), p)
				if err != nil {
					return err
				}
				users = append(users, page.Items...)
				if page.Next == "" {
					break
				}
				p.After = page.Next
			}
			w := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "ID\tROLE\tSTATUS\tNAME\tKEYS")
			for _, u := range users {
				keys := ""
				for _, c := range u.Credentials {
					state := "active"
					if c.RevokedAt != nil {
						state = "revoked"
					}
					keys += fmt.Sprintf("%s(%s,%s) ", c.ID, c.AttestationFormat, state)
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", u.ID, u.Role, u.Status, u.DisplayName, keys)
			}
			return w.Flush()
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "suspend USER-ID",
		Short: "Suspend a user: their sessions end at once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, closeDB, err := a.identity(cmd)
			if err != nil {
				return err
			}
			defer closeDB()
			if err := svc.Suspend(cmd.Context(), "cli", args[0]); err != nil {
				if errors.Is(err, identity.ErrNotFound) {
					return fmt.Errorf("no active user %s", args[0])
				}
				return err
			}
			fmt.Fprintf(a.stdout, "user %s suspended\n", args[0])
			return nil
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "revoke-key CREDENTIAL-ID",
		Short: "Revoke a passkey: the sessions it opened end at once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, closeDB, err := a.identity(cmd)
			if err != nil {
				return err
			}
			defer closeDB()
			if err := svc.RevokeCredential(cmd.Context(), "cli", args[0]); err != nil {
				if errors.Is(err, identity.ErrNotFound) {
					return fmt.Errorf("no active key %s", args[0])
				}
				return err
			}
			fmt.Fprintf(a.stdout, "key %s revoked\n", args[0])
			return nil
		},
	})
	return cmd
}
