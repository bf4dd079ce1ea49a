package audit

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"gorm.io/gorm"
)

// VerifyResult is what a walk of an intact chain found.
type VerifyResult struct {
	Rows int64
	Head string
	// Checkpoint is where the walk started: the last row retention purged (seq 0 when none was).
	Checkpoint Checkpoint
	// Unlinked counts the rows committed less than LinkBound ago and not linked yet (intact: their content
	// matches the hash stored with them).
	Unlinked int64
}

// BrokenRowError names the first row that does not fit the chain, and why.
type BrokenRowError struct {
	Seq    int64
	Reason string
}

func (e *BrokenRowError) Error() string {
	return fmt.Sprintf("row %d: %s", e.Seq, e.Reason)
}

func (e *BrokenRowError) Unwrap() error { return ErrBroken }

const verifyBatch = 2000

// Verify walks the held chain in order from the retention checkpoint (the genesis when nothing was purged),
// recomputing every hash, checks that the chain head points at its last row, and that the chain itself
// recorded the checkpoint (the latest audit.purged row names it), so that rows cannot be cut from the start
// by moving the checkpoint. It returns a *BrokenRowError (wrapping ErrBroken) for the first row that does not fit: a changed
// byte breaks that row's hash, a deleted row leaves a gap in seq, swapped rows break both hashes, and rows cut
// from the end no longer match the head.
func Verify(ctx context.Context, db *gorm.DB) (VerifyResult, error) {
	return walk(ctx, db, nil)
}

// walk is Verify, handing each linked row that fits to visit (when not nil) as it goes: a reader that needs
// some of the rows reads them in the same pass.
func walk(ctx context.Context, db *gorm.DB, visit func(Row)) (VerifyResult, error) {
	cp, err := ReadCheckpoint(ctx, db)
	if err != nil {
		return VerifyResult{}, err
	}
	return walkFrom(ctx, db, cp, Anchor{Seq: cp.Seq, Hash: cp.Hash}, visit)
}

// walkFrom is walk starting after from, a row already verified (the checkpoint cp for a whole walk; the last
// row a process verified for the rows added since, see verified.go): rows after from are checked as walk
// checks them, then the head, the unlinked rows and cp. Rows counts the rows walked.
func walkFrom(ctx context.Context, db *gorm.DB, cp Checkpoint, from Anchor, visit func(Row)) (VerifyResult, error) {
	res := VerifyResult{Checkpoint: cp}
	prevSeq, prevHash := from.Seq, from.Hash
	for {
		n, err := walkLinked(ctx, db, &prevSeq, &prevHash, visit)
		res.Rows += n
		if err != nil {
			return res, err
		}
		var head struct {
			Seq  int64
			Hash string
		}
		if err := db.WithContext(ctx).Raw("SELECT seq, hash FROM audit_head WHERE id = 1").Scan(&head).Error; err != nil {
			return res, fmt.Errorf("read chain head: %w", err)
		}
		if head.Seq > prevSeq && n > 0 {
			continue // rows were linked while we walked: walk on to the head
		}
		if head.Seq != prevSeq || head.Hash != prevHash {
			return res, &BrokenRowError{Seq: prevSeq + 1, Reason: fmt.Sprintf("chain head says the last row is %d, but the chain ends at row %d: rows were removed from the end", head.Seq, prevSeq)}
		}
		break
	}
	unlinked, err := checkUnlinked(ctx, db, prevSeq, time.Now())
	if err != nil {
		return res, err
	}
	res.Unlinked = unlinked
	if bad := checkCheckpoint(ctx, db, cp); bad != nil {
		return res, bad
	}
	res.Head = prevHash
	return res, nil
}

// walkLinked checks the linked rows after *prevSeq in order, moving *prevSeq and *prevHash along and handing
// each to visit, and returns how many it checked. Plain database/sql scans: the walk reads every row, and
// gorm's reflection per row cost more than the hashing.
func walkLinked(ctx context.Context, db *gorm.DB, prevSeq *int64, prevHash *string, visit func(Row)) (int64, error) {
	var checked int64
	for {
		rows, err := db.WithContext(ctx).Raw(`SELECT seq, at, actor, action, subject, details, prev_hash, hash
			FROM audit_events WHERE seq > ? ORDER BY seq LIMIT ?`, *prevSeq, verifyBatch).Rows()
		if err != nil {
			return checked, fmt.Errorf("read audit rows: %w", err)
		}
		n := 0
		for rows.Next() {
			var r Row
			if err := rows.Scan(&r.Seq, &r.At, &r.Actor, &r.Action, &r.Subject, &r.Details, &r.PrevHash, &r.Hash); err != nil {
				rows.Close()
				return checked, fmt.Errorf("read audit row after %d: %w", *prevSeq, err)
			}
			n++
			if bad := checkRow(r, *prevSeq, *prevHash); bad != nil {
				rows.Close()
				return checked, bad
			}
			*prevSeq, *prevHash = r.Seq, r.Hash
			checked++
			if visit != nil {
				visit(r)
			}
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return checked, fmt.Errorf("read audit rows: %w", err)
		}
		if n < verifyBatch {
			return checked, nil
		}
	}
}

// checkUnlinked looks at the committed rows not linked yet: one whose content no longer matches the hash
// stored with it was changed before it could be linked, and one older than LinkBound was never linked (the
// linking is failing, or the row was slipped in without it). Either breaks the chain, named as the position
// after the last linked row, lastSeq. It returns how many intact, recent rows wait.
func checkUnlinked(ctx context.Context, db *gorm.DB, lastSeq int64, now time.Time) (int64, error) {
	rows, err := db.WithContext(ctx).Raw(`SELECT id, at, actor, action, subject, details, content_hash, added_at
		FROM audit_events WHERE seq IS NULL ORDER BY id`).Rows()
	if err != nil {
		return 0, fmt.Errorf("read unlinked audit rows: %w", err)
	}
	defer rows.Close()
	var n int64
	for rows.Next() {
		var id int64
		var r Row
		var content sql.NullString
		var added sql.NullTime
		if err := rows.Scan(&id, &r.At, &r.Actor, &r.Action, &r.Subject, &r.Details, &content, &added); err != nil {
			return n, fmt.Errorf("read unlinked audit row: %w", err)
		}
		if h, err := ContentHash(r); err != nil || !content.Valid || h != content.String {
			return n, &BrokenRowError{Seq: lastSeq + 1, Reason: fmt.Sprintf("unlinked row (id %d) was changed before it was linked: its content does not match its content hash", id)}
		}
		if !added.Valid || now.Sub(added.Time) > LinkBound {
			return n, &BrokenRowError{Seq: lastSeq + 1, Reason: fmt.Sprintf("unlinked row (id %d) committed at %s is still not linked after %s", id, added.Time.UTC().Format(time.RFC3339), LinkBound)}
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return n, fmt.Errorf("read unlinked audit rows: %w", err)
	}
	return n, nil
}

// checkCheckpoint compares the checkpoint with what the latest audit.purged row of the chain says.
func checkCheckpoint(ctx context.Context, db *gorm.DB, cp Checkpoint) error {
	if cp.Seq == 0 {
		return nil
	}
	var rows []Row
	// The newest audit.purged row: an unlinked one (just committed with the checkpoint it names) is newer than
	// any linked one.
	if err := db.WithContext(ctx).Raw(`SELECT seq, details FROM audit_events WHERE action = 'audit.purged'
		ORDER BY CASE WHEN seq IS NULL THEN 1 ELSE 0 END DESC, seq DESC, id DESC LIMIT 1`).Scan(&rows).Error; err != nil {
		return fmt.Errorf("read audit.purged: %w", err)
	}
	if len(rows) == 0 {
		return &BrokenRowError{Seq: cp.Seq + 1, Reason: fmt.Sprintf("the checkpoint says rows up to %d were purged, but no audit.purged row records it", cp.Seq)}
	}
	var d struct {
		ThroughSeq  int64  `json:"through_seq"`
		ThroughHash string `json:"through_hash"`
	}
	if err := json.Unmarshal([]byte(rows[0].Details), &d); err != nil || d.ThroughSeq != cp.Seq || d.ThroughHash != cp.Hash {
		return &BrokenRowError{Seq: rows[0].Seq, Reason: fmt.Sprintf("audit.purged names row %d, but the checkpoint is at row %d", d.ThroughSeq, cp.Seq)}
	}
	return nil
}

// checkRow says why r does not follow the row (prevSeq, prevHash), or nil when it fits.
func checkRow(r Row, prevSeq int64, prevHash string) *BrokenRowError {
	if r.Seq != prevSeq+1 {
		return &BrokenRowError{Seq: r.Seq, Reason: fmt.Sprintf("follows row %d: row %d is missing", prevSeq, prevSeq+1)}
	}
	if r.PrevHash != prevHash {
		return &BrokenRowError{Seq: r.Seq, Reason: fmt.Sprintf("prev_hash does not match the hash of row %d", prevSeq)}
	}
	h, err := RowHash(r)
	if err != nil {
		return &BrokenRowError{Seq: r.Seq, Reason: err.Error()}
	}
	if h != r.Hash {
		return &BrokenRowError{Seq: r.Seq, Reason: "hash does not match the row's content"}
	}
	return nil
}
