package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"gorm.io/gorm"
)

// ErrNoDatabase is returned by OpenExisting when the database it names is not there.
var ErrNoDatabase = errors.New("no gatewayd database")

// OpenExisting is Open for commands that only read (audit verify, receipt export, officers export, users
// list, migrate status): a mistyped --db must not create an empty SQLite file and then fail on a missing table.
// It refuses, in one line, a path that is not an existing file, and a database that was never migrated.
func OpenExisting(ctx context.Context, dsn string) (*gorm.DB, error) {
	if !IsPostgresURL(dsn) {
		path, _, _ := strings.Cut(dsn, "?")
		st, err := os.Stat(path)
		switch {
		case errors.Is(err, os.ErrNotExist):
			return nil, fmt.Errorf("%w at %s: the file does not exist (check --db or --data-dir)", ErrNoDatabase, path)
		case err != nil:
			return nil, fmt.Errorf("%w at %s: %v", ErrNoDatabase, path, err)
		case !st.Mode().IsRegular():
			return nil, fmt.Errorf("%w at %s: not a regular file", ErrNoDatabase, path)
		}
	}
	db, err := Open(ctx, dsn)
	if err != nil {
		return nil, err
	}
	var n int64
	if err := db.WithContext(ctx).Raw("SELECT COUNT(*) FROM schema_migrations").Scan(&n).Error; err != nil || n == 0 {
		Close(db)
		return nil, fmt.Errorf("%w: the database holds no migrated gatewayd schema (run gatewayd migrate up)", ErrNoDatabase)
	}
	return db, nil
}
