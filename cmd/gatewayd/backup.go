package main

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"gatewayd/gateway"
	"gatewayd/gateway/store"
)

func (a *app) backupCommand() *cobra.Command {
	var to string
	cmd := &cobra.Command{
		Use:   "backup --to FILE",
		Short: "Write a consistent copy of the database (SQLite: online copy; PostgreSQL: pg_dump), never the key file",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if to == "" {
				return fmt.Errorf("--to: name the backup file to write")
			}
			if mustAbs(to) == mustAbs(a.cfg.KeyFile) {
				return fmt.Errorf("--to: that is the key file")
			}
			db, err := store.Open(cmd.Context(), a.cfg.DB)
			if err != nil {
				return err
			}
			defer store.Close(db)
			m, err := gateway.Backup(cmd.Context(), db, a.cfg.DB, to, time.Now())
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "backup %s written to %s (mode 0600).\n", m.ID, to)
			fmt.Fprintf(a.stdout, "The key file %s is NOT in it: keep a copy of the key apart from the backups (another medium, another place).\n"+
				"A backup without its key cannot be read; a key stored beside its backups protects nothing.\n", a.cfg.KeyFile)
			if store.DialectOf(db) == store.Postgres {
				fmt.Fprintln(a.stdout, "Restore: createdb NEW && psql -v ON_ERROR_STOP=1 -d NEW -f "+to+"; the first start on NEW invalidates the extracts it holds ready.")
			} else {
				fmt.Fprintln(a.stdout, "Restore: stop the server, then gatewayd restore --from "+to)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "the backup file to write (must not exist)")
	return cmd
}

func mustAbs(p string) string {
	abs, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	return abs
}

func (a *app) restoreCommand() *cobra.Command {
	var from string
	var postgresRestored bool
	cmd := &cobra.Command{
		Use:   "restore (--from FILE | --postgres-restored)",
		Short: "Put a backup in place (SQLite) or mark a restored PostgreSQL database; ready extracts are invalidated",
		Long: "SQLite: with the server stopped, puts the backup FILE in place of --db (the replaced file is kept beside it)\n" +
			"and invalidates every extract that was ready in the backup (audited; an officer can re-issue).\n" +
			"PostgreSQL: restore with your tools first (psql -f for a gatewayd backup, or a base backup), then run\n" +
			"restore --postgres-restored before starting any instance; a gatewayd dump is also detected at start.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var (
				res gateway.RestoreResult
				err error
			)
			isPG := store.IsPostgresURL(a.cfg.DB)
			switch {
			case postgresRestored == (from != ""):
				return fmt.Errorf("give either --from FILE (SQLite) or --postgres-restored (PostgreSQL)")
			case postgresRestored && !isPG:
				return fmt.Errorf("--postgres-restored: --db is not a postgres:// URL")
			case from != "" && isPG:
				return fmt.Errorf("--from: on PostgreSQL restore with psql or your base backup tools, then run restore --postgres-restored")
			case postgresRestored:
				db, oerr := store.Open(cmd.Context(), a.cfg.DB)
				if oerr != nil {
					return oerr
				}
				defer store.Close(db)
				if _, err = gateway.Migrate(cmd.Context(), db, "cli"); err == nil {
					res, err = gateway.ApplyRestore(cmd.Context(), db, time.Now(), true)
				}
			default:
				res, err = gateway.RestoreSQLite(cmd.Context(), from, a.cfg.DB, time.Now())
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "restore epoch %d: %d extracts that were ready are invalidated (officers can re-issue them).\n",
				res.Epoch, len(res.Invalidated))
			return nil
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "the backup file to put in place (SQLite)")
	cmd.Flags().BoolVar(&postgresRestored, "postgres-restored", false, "the PostgreSQL database named by --db was restored: apply the restore rule")
	return cmd
}
