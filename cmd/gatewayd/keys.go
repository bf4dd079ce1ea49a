package main

import (
	"fmt"
	"strconv"

	"github.com/spf13/cobra"
	"gorm.io/gorm"

	"gatewayd/gateway"
	"gatewayd/gateway/keys"
	"gatewayd/gateway/store"
)

func (a *app) keysCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "keys", Short: "Manage the master key file"}
	cmd.AddCommand(&cobra.Command{
		Use:   "init",
		Short: "Write a new master key file (mode 0600); never overwrites one",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := keys.Init(a.cfg.KeyFile); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "wrote a new master key to %s (mode 0600). Back it up apart from the database: without it the records cannot be read.\n", a.cfg.KeyFile)
			return nil
		},
	})
	var (
		batch   int
		prepare bool
	)
	rotate := &cobra.Command{
		Use:   "rotate",
		Short: "Add a master key version and re-wrap every data key under it, in batches, while the gateway serves; run again to resume",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			master, db, err := a.openKeyed(cmd)
			if err != nil {
				return err
			}
			defer store.Close(db)
			if prepare {
				v, err := master.Prepare(cmd.Context(), db)
				if err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "master key version %d written to %s, not used yet. Copy the key file to every instance, then run: gatewayd keys rotate\n", v, a.cfg.KeyFile)
				return nil
			}
			res, err := master.Rotate(cmd.Context(), db, keys.RotateOptions{Batch: batch})
			if err != nil {
				return fmt.Errorf("%w (run keys rotate again to resume)", err)
			}
			if res.Resumed {
				fmt.Fprintf(a.stdout, "resumed the rotation to master key version %d: %d data keys re-wrapped.\n", res.To, res.Rewrapped)
			} else {
				fmt.Fprintf(a.stdout, "master key version %d added to %s; %d data keys re-wrapped from version %d.\n", res.To, a.cfg.KeyFile, res.Rewrapped, res.From)
			}
			fmt.Fprintln(a.stdout, "Copy the key file to every instance and to its offline copy; then: gatewayd keys retire OLD-VERSION")
			return nil
		},
	}
	rotate.Flags().IntVar(&batch, "batch", 200, "data keys re-wrapped per transaction")
	rotate.Flags().BoolVar(&prepare, "prepare", false, "only write the next version into the key file (several instances: copy it to each before rotating)")
	cmd.AddCommand(rotate, &cobra.Command{
		Use:   "retire VERSION",
		Short: "Retire a master key version that wraps nothing any more, and remove it from the key file",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := strconv.Atoi(args[0])
			if err != nil || v < 1 {
				return fmt.Errorf("VERSION: %q is not a version number (1, 2, ...)", args[0])
			}
			master, db, err := a.openKeyed(cmd)
			if err != nil {
				return err
			}
			defer store.Close(db)
			if err := master.Retire(cmd.Context(), db, v); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "master key version %d retired and removed from %s. Copies of the old key file are only needed to restore backups made before the rotation.\n", v, a.cfg.KeyFile)
			return nil
		},
	})
	return cmd
}

// openKeyed opens the database and binds the key file to it (the same checks as serve's start), without
// migrating: key commands run beside a serving gateway.
func (a *app) openKeyed(cmd *cobra.Command) (*keys.Master, *gorm.DB, error) {
	master, err := keys.Load(a.cfg.KeyFile)
	if err != nil {
		return nil, nil, err
	}
	db, err := store.Open(cmd.Context(), a.cfg.DB)
	if err != nil {
		return nil, nil, err
	}
	if err := gateway.CheckKey(cmd.Context(), db, master, a.cfg.KeyFile); err != nil {
		store.Close(db)
		return nil, nil, err
	}
	return master, db, nil
}
