package store

import (
	"context"
	"fmt"

	"gorm.io/gorm"
)

// Commits that do not wait for the disk (issue 15). A PostgreSQL commit waits, by default, until its WAL record
// is flushed to disk: about a millisecond on these machines, more than everything else a sign-in does. With
// synchronous_commit off for one transaction, its commit returns at once and the WAL writer flushes it within
// a fraction of a second; a crash in between loses that transaction, whole (never part of it).
//
// That is allowed only for a transaction whose loss is harmless AND cannot be observed by a later durable
// commit. The second half holds by construction: PostgreSQL writes and flushes WAL in order, so any later
// synchronous commit, of any session, flushes every earlier asynchronous one first. So a lost asynchronous
// transaction can only be one that nothing durable came after: no audited action, decision or retrieval that
// used it can survive without it. Never use it for anything that changes a request's state, a decision, a
// claim or a delivery. On SQLite NoFlushWaitJoin does nothing: every commit there waits for the disk
// (synchronous=FULL, sqliteDSN says why), and one connection cannot change that for one transaction.

// NoFlushWaitJoin makes a statement commit without waiting for its WAL flush (synchronous_commit off, for its
// transaction only; read the rule above before calling it), in the same round trip: it returns a FROM (or
// USING) item to add to the statement, " <keyword> (SELECT set_config(…))", whose one row is read before the
// statement writes, so the setting holds when the statement commits; "" on SQLite. (BEGIN, SET LOCAL, the
// statement and COMMIT would be four round trips.) In a transaction, the setting holds until its commit, as
// SET LOCAL's: the audit chain's link and a sign-in's sign count put it in one of their statements.
// TestNoFlushWaitJoin shows the setting in force inside the statement, until a transaction's commit, and gone
// after it.
func NoFlushWaitJoin(db *gorm.DB, keyword string) string {
	if DialectOf(db) != Postgres {
		return ""
	}
	return " " + keyword + " (SELECT set_config('synchronous_commit', 'off', true)) AS no_flush_wait"
}

// WaitForFlush returns once every commit made before the call is on disk, asynchronous ones included: what
// leaves the database (a syslog copy, an export) after it cannot name a transaction a crash could still undo.
// A commit that waits for its flush flushes every earlier one, so one durable commit is enough: a transaction
// that does nothing but take a transaction id (PostgreSQL writes no commit record for one that took none).
func WaitForFlush(ctx context.Context, db *gorm.DB) error {
	if DialectOf(db) != Postgres {
		return nil
	}
	if err := db.WithContext(ctx).Exec("SELECT pg_current_xact_id()").Error; err != nil {
		return fmt.Errorf("wait for the WAL flush: %w", err)
	}
	return nil
}
