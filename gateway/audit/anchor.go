package audit

import (
	"context"
	"fmt"

	"gorm.io/gorm"

	"gatewayd/gateway/store"
)

// Anchor is a position in the chain: a row's seq and hash (seq 0 with GenesisHash for an empty chain). A
// signed decision holds the chain's head at preparation as its anchor, so that once a receipt is kept outside,
// the rows up to its anchor cannot be rewritten unnoticed.
type Anchor struct {
	Seq  int64  `json:"seq"`
	Hash string `json:"hash"`
}

// Head returns the chain's head as it stands.
func Head(ctx context.Context, db *gorm.DB) (Anchor, error) {
	var a Anchor
	if err := db.WithContext(ctx).Raw("SELECT seq, hash FROM audit_head WHERE id = 1").Scan(&a).Error; err != nil {
		return Anchor{}, fmt.Errorf("read chain head: %w", err)
	}
	if a.Hash == "" {
		return Anchor{}, fmt.Errorf("read chain head: missing (database not migrated?)")
	}
	return a, nil
}

// RowAnchor returns the stored hash at seq (GenesisHash for seq 0), or "" when the chain has no such row.
func RowAnchor(ctx context.Context, db *gorm.DB, seq int64) (string, error) {
	if seq == 0 {
		return GenesisHash, nil
	}
	var hashes []string
	if err := db.WithContext(ctx).Raw("SELECT hash FROM audit_events WHERE seq = ?", seq).Scan(&hashes).Error; err != nil {
		return "", fmt.Errorf("read audit row %d: %w", seq, err)
	}
	if len(hashes) == 0 {
		return "", nil
	}
	return hashes[0], nil
}

// DurableHead returns the chain's head once every link up to it is on disk (store.WaitForFlush): on PostgreSQL a
// link commits without waiting for its WAL flush (see the package comment), and what leaves the database (a
// syslog copy, an export) must not name a link a crash of the database server could still undo. The reader
// then stops at the head returned.
func DurableHead(ctx context.Context, db *gorm.DB) (Anchor, error) {
	a, err := Head(ctx, db)
	if err != nil {
		return a, err
	}
	if err := store.WaitForFlush(ctx, db); err != nil {
		return Anchor{}, fmt.Errorf("chain head: %w", err)
	}
	return a, nil
}
