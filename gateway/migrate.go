package gateway

import (
	"context"
	"fmt"

	"gorm.io/gorm"

	"gatewayd/gateway/audit"
	"gatewayd/gateway/store"
)

// Migrate applies the pending schema migrations and audits each one, as actor ("system" for serve, "cli" for
// the commands). Every command that may meet a fresh database goes through it, so the chain always says when
// the schema changed.
func Migrate(ctx context.Context, db *gorm.DB, actor string) ([]store.Migration, error) {
	applied, err := store.Up(ctx, db)
	for _, m := range applied {
		ev := audit.Event{Actor: actor, Action: "schema.migrated", Subject: fmt.Sprintf("migration:%04d", m.Version),
			Details: map[string]any{"name": m.Name}}
		if aerr := audit.Record(ctx, db, ev); aerr != nil && err == nil {
			err = aerr
		}
	}
	return applied, err
}

// OpenMigrated opens the configured database and migrates it; the CLI commands that work on the data use it.
func OpenMigrated(ctx context.Context, cfg *Config, actor string) (*gorm.DB, error) {
	db, err := store.Open(ctx, cfg.DB)
	if err != nil {
		return nil, err
	}
	if _, err := Migrate(ctx, db, actor); err != nil {
		store.Close(db)
		return nil, err
	}
	return db, nil
}
