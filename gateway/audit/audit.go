// Package audit keeps the tamper-evident audit log: a hash chain of events, each inserted in the same database
// transaction as the change it records, so that no change survives without its row.
//
// Canonical form of a row (what its hash covers), version 1:
//
//	hash = SHA-256( prev_hash (32 raw bytes) || canonical )
//	canonical = {"seq":N,"at":"2006-01-02T15:04:05.000000Z","actor":"...","action":"...","subject":"...","details":{...}}
//
// canonical is encoding/json's output for the fields in that order, with no spaces; "at" is UTC with exactly
// six fractional digits (both databases keep microseconds); "details" is the row's details column, itself
// encoding/json of a map (keys sorted). The first row's prev_hash is 64 zeros. Hashes are stored in lower-case hex.
//
// # Inserting and linking (issue 15)
//
// A row's place in the chain (seq, prev_hash, hash) used to be taken in the change's transaction, under a lock
// on the chain head held until that transaction committed: every audited transaction of the gateway queued
// on one row, commit flush included (at 32 concurrent retrievals on PostgreSQL, 151 of 152 sampled active
// backends waited on it). Now a row is written in two steps:
//
//  1. Insert, in the change's transaction: the row's content, its content hash (ContentHash: SHA-256 of the
//     canonical form with seq 0) and the time it was added, with seq, prev_hash and hash NULL. No chain lock
//     is taken; the change and its row commit together or not at all, as before (fail closed).
//     On PostgreSQL a change that is one statement may carry its row in it (InsertFrom, a data-modifying
//     WITH: filing and sign-in; UpdateOne, an UPDATE of one row and its row: an extract's claim and its
//     delivery record): one transaction and one round trip instead of four, and the same guarantee.
//  2. Link, after the commit, by the process's chainer (one per connection pool, chain.go): the commit wakes
//     it (store.AfterCommit) and the call that made the change returns without waiting. The wake waits
//     linkDelay (20 ms) before its run begins, so that one run links the rows of every commit made meanwhile:
//     a run costs about as much for one row as for many, and a process committing one change after another
//     paid one per row. The chainer runs link runs one after another while it is woken; a run links every
//     row committed before it began, in short transactions of up to linkBatch rows and two statements each:
//     it reads the head and the unlinked rows, checks each one's content against its content hash, gives it
//     the next seq and its chained hash, and moves the head, on condition that the head is still where it
//     read it and every row still unlinked (the unique seq and the head row's lock make a concurrent linker
//     of another instance fail its condition and read again: one link wins, none is lost or doubled). So
//     under load one run links the rows of every request that committed during the previous one, and neither
//     the changes' transactions nor their callers wait on each other, or on a link, for the chain.
//
// Why a chainer nobody waits for, rather than links the callers wait for (the design before: each call
// waited for a link run that began after its commit, a second transaction per audited call on PostgreSQL,
// and the runs of a process queued one behind another) or group commit of appends (the appends would still
// wait for one another's flush): a row's place in the chain is derived data, computable from rows that are
// already durable, so the caller has nothing to wait for unless it is about to name the chain's end outside
// the database. The readers were decided one by one:
//   - A signed decision's anchor (approvals) and the officers' register name the head outside the database,
//     and should cover what was committed before them (the request decided on, the officer's last actions):
//     they read LinkedHead, which waits for a run that began after the call (Link). Preparing a decision is
//     not a hot path.
//   - audit export links the rows committed before it (an export right after a change holds it), then reads
//     up to DurableHead. The syslog forwarder sends rows once linked, a second later at most: it waits for
//     nothing.
//   - Verify (audit verify, the server's periodic Walk) counts rows not linked yet (VerifyResult.Unlinked) and
//     checks them against their content hash; the access history (Trail, CheckTrail) shows such a row last,
//     checked the same way. Neither needs a row linked, and neither links (they read only).
//   - Retention purges the linked prefix only; metrics' row count is the head: a row is counted an instant
//     late.
//   - A process that closes its database (store.Close: the server at shutdown, every CLI command) waits for
//     its chainer to finish the runs asked of it: it leaves no row of its own to the sweep, and tests leak no
//     goroutine. The chainer's goroutine lives only while there is something to link.
//   - Tests that read the chain right after a change wait for the link (Link) where they read it.
//
// The chain position comes from the linker, never from a sequence: PostgreSQL sequences are not
// transactional, so rolled-back transactions leave holes in id (the insertion order) but never in seq. Head,
// the anchor of signed decisions, is the last linked row. Verify, export and the syslog forwarder follow
// linked rows only.
//
// On SQLite a writing transaction holds the database's only write lock from BEGIN to COMMIT anyway (nothing
// to gain from a second transaction), so Append links the row in place, in the change's transaction, as
// before: no window. It does the same on PostgreSQL for a transaction that store.Tx did not begin (nothing
// would run after its commit), holding the head row's lock until that commit.
//
// # Durability of a link (PostgreSQL)
//
// The row commits durably with its change (its transaction waits for the WAL flush, as every change's does),
// and the link transaction commits without waiting for it (synchronous_commit off for that transaction only):
// before, each audited change paid a second flush, and the process's link runs queued behind one another's.
// A link is derived data: a crash of the database server may lose the last links committed (a fraction of a
// second of them), never a row; the rows come back unlinked and the next link links them again, possibly in
// another order. So nothing may leave the database naming a link that is not on disk yet: any commit that
// waits for its flush flushes every earlier commit, so a signed decision's anchor (read from LinkedHead,
// stored by a durable commit), a backup (audited by one) are covered; the syslog forwarder and audit export, which
// send rows out without a commit of their own first, read up to DurableHead, which flushes, and a walk of the
// chain (Verify, the access history's remembered rows) flushes before it returns what it reached. On SQLite a
// row is linked in its change's transaction: nothing to choose.
//
// No gap can be hidden, and the window is bounded:
//   - A row committed but not linked is visible (seq IS NULL). Verify counts it (VerifyResult.Unlinked) and
//     fails when one waited longer than LinkBound (a minute): the linking failed, or a row was slipped in
//     without it. A process that stopped between its commit and its link (killed, or its database gone)
//     leaves its rows to the next link; every server links leftovers every LinkInterval (10 s).
//   - A row changed after its commit but before its link no longer matches its content hash: the linker
//     refuses to link it (it links the others and names it) and Verify fails on it. An attacker able to
//     rewrite the database may also recompute the content hash, or delete the row before it is linked; that
//     attacker can equally rewrite the linked end of the chain after the last anchor kept outside (a
//     receipt's audit_anchor, the syslog copy), by recomputing the hashes, as before this change. The chain's
//     evidence against a database writer always came from those outside anchors; linking moves the end they
//     can cover by at most the time to link (a link run, a few milliseconds; LinkBound at worst), and a row is
//     sent to syslog once linked.
package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"gorm.io/gorm"

	"gatewayd/gateway/store"
)

// TimeLayout is the fixed layout of "at" in the canonical form.
const TimeLayout = "2006-01-02T15:04:05.000000Z"

// GenesisHash is the prev_hash of the first row.
const GenesisHash = "0000000000000000000000000000000000000000000000000000000000000000"

// Event is what a caller records. Details hold ids and counts, never names, identifiers or health data.
type Event struct {
	At      time.Time // zero means now
	Actor   string    // "user:<id>", "system", "cli", "ip:<addr>"
	Action  string    // dotted verb, e.g. "server.start", "request.filed"
	Subject string    // what it is about, e.g. "request:<id>", "patient:<id>"
	Details map[string]any
}

// Row is one stored audit event. Seq, PrevHash and Hash are set when the row is linked into the chain (zero
// while it is not); ContentHash and AddedAt are set when it is inserted.
type Row struct {
	Seq         int64
	At          time.Time
	Actor       string
	Action      string
	Subject     string
	Details     string
	PrevHash    string
	Hash        string
	ContentHash string
	AddedAt     time.Time
}

// TableName tells gorm the table.
func (Row) TableName() string { return "audit_events" }

// ErrUnavailable is wrapped by Append's errors: the row could not be written, so the change it records is
// refused with it. Callers answer "try again later", never "refused".
var ErrUnavailable = errors.New("audit log unavailable")

// ErrBroken is wrapped by the error Verify returns when the chain does not fit.
var ErrBroken = errors.New("audit chain broken")

// Append adds ev to the chain inside tx, the caller's transaction. It must be called with a transaction: if
// the append fails, the caller's whole change fails with it.
//
// On PostgreSQL, in a transaction begun by store.Tx, the row is inserted unlinked (its content hash, no seq)
// and linked into the chain by the process's chainer after the commit, which nobody waits for (see the
// package comment): the transaction takes no chain lock. Otherwise (SQLite, where the transaction already
// holds the database's single write lock, or a transaction store.Tx did not begin) the row is linked in
// place, under the head row's lock, as before.
func Append(tx *gorm.DB, ev Event) error {
	row, err := newRow(ev)
	if err != nil {
		return err
	}
	if store.DialectOf(tx) == store.Postgres && store.AfterCommit(tx, "audit.link", linkAfterCommit) {
		if err := insertUnlinked(tx, row); err != nil {
			return fmt.Errorf("audit %s: insert row: %w: %w", ev.Action, ErrUnavailable, err)
		}
		return nil
	}
	// Taking the head row for update serializes these appenders and the linker on PostgreSQL; on SQLite the
	// transaction already holds the database's single write lock (BEGIN IMMEDIATE).
	//
	// Its three statements go straight to the transaction (store.QueryRow, store.Exec), not through gorm's
	// statement building and callbacks: on SQLite every audited change runs them (audit.Append was 6.8 % of the
	// server's CPU under bench-peer's load, SQLite, c = 8, gorm's part of it included).
	ctx := tx.Statement.Context
	var seq int64
	var hash string
	q := "SELECT seq, hash FROM audit_head WHERE id = 1"
	if store.DialectOf(tx) == store.Postgres {
		q += " FOR UPDATE"
	}
	err = store.QueryRow(ctx, tx, q).Scan(&seq, &hash)
	if errors.Is(err, sql.ErrNoRows) || err == nil && hash == "" {
		return fmt.Errorf("audit %s: chain head missing (database not migrated?)", ev.Action)
	}
	if err != nil {
		return fmt.Errorf("audit %s: read chain head: %w: %w", ev.Action, ErrUnavailable, err)
	}
	row.Seq, row.PrevHash = seq+1, hash
	row.Hash, err = RowHash(row)
	if err != nil {
		return fmt.Errorf("audit %s: %w", ev.Action, err)
	}
	if _, err := store.Exec(ctx, tx, `INSERT INTO audit_events (seq, at, actor, action, subject, details, prev_hash, hash, content_hash, added_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, row.Seq, row.At, row.Actor, row.Action, row.Subject, row.Details, row.PrevHash,
		row.Hash, row.ContentHash, row.AddedAt); err != nil {
		return fmt.Errorf("audit %s: insert row: %w: %w", ev.Action, ErrUnavailable, err)
	}
	moved, err := store.Exec(ctx, tx, "UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1 AND seq = ?", row.Seq, row.Hash, seq)
	if err != nil {
		return fmt.Errorf("audit %s: move chain head: %w: %w", ev.Action, ErrUnavailable, err)
	}
	if moved != 1 {
		return fmt.Errorf("audit %s: chain head moved under us", ev.Action)
	}
	return nil
}

// newRow makes ev's row as it is inserted: its content, its content hash and the time it is added.
func newRow(ev Event) (Row, error) {
	at := ev.At
	if at.IsZero() {
		at = time.Now()
	}
	at = at.UTC().Truncate(time.Microsecond)
	details, err := marshalDetails(ev.Details)
	if err != nil {
		return Row{}, fmt.Errorf("audit %s: %w", ev.Action, err)
	}
	row := Row{At: at, Actor: ev.Actor, Action: ev.Action, Subject: ev.Subject, Details: details,
		AddedAt: time.Now().UTC().Truncate(time.Microsecond)}
	if row.ContentHash, err = ContentHash(row); err != nil {
		return Row{}, fmt.Errorf("audit %s: %w", ev.Action, err)
	}
	return row, nil
}

// Record appends ev in a transaction of its own, for events that come with no other change (server start,
// a refused client, ...).
func Record(ctx context.Context, db *gorm.DB, ev Event) error {
	return store.Tx(ctx, db, func(tx *gorm.DB) error { return Append(tx, ev) })
}

// UpdateOne runs update (an UPDATE that changes one row or none; args its arguments) and, only if it changed
// one, appends ev with it, all or nothing, and says whether it did. On PostgreSQL the two are one statement
// (the update a data-modifying WITH, the audit row inserted from its RETURNING: InsertFrom), committed on its
// own: one round trip where BEGIN, the update, the audit row and COMMIT were four. SQLite, whose WITH cannot
// hold an UPDATE, runs them in a transaction, shared with the calls that arrived meanwhile (group commit:
// update_batch.go). A failure on PostgreSQL wraps ErrUnavailable (the statement
// carries the audit row: fail closed).
func UpdateOne(ctx context.Context, db *gorm.DB, update string, args []any, ev Event) (bool, error) {
	if store.DialectOf(db) != store.Postgres {
		return batchedUpdateOne(ctx, db, update, args, ev)
	}
	insert, insertArgs, err := InsertFrom(ev, "changed")
	if err != nil {
		return false, err
	}
	res := db.WithContext(ctx).Exec("WITH changed AS ("+update+" RETURNING 1) "+insert, append(args, insertArgs...)...)
	if res.Error != nil {
		return false, fmt.Errorf("%w: %w", ErrUnavailable, res.Error)
	}
	if res.RowsAffected != 1 {
		return false, nil
	}
	Committed(ctx, db)
	return true, nil
}

func marshalDetails(d map[string]any) (string, error) {
	if d == nil {
		return "{}", nil
	}
	b, err := json.Marshal(d) // maps marshal with sorted keys: canonical
	if err != nil {
		return "", fmt.Errorf("details: %w", err)
	}
	return string(b), nil
}

// Canonical returns the bytes a row's hash covers (see the package comment): encoding/json's output for the
// fields in order, written directly (a verification re-hashes thousands of rows, and the encoder's reflection
// cost more than the hashing). TestCanonicalIsEncodingJSON holds it to the encoder's bytes.
func Canonical(r Row) ([]byte, error) {
	buf := make([]byte, 0, 96+len(r.Actor)+len(r.Action)+len(r.Subject)+len(r.Details))
	buf = append(buf, `{"seq":`...)
	buf = strconv.AppendInt(buf, r.Seq, 10)
	buf = append(buf, `,"at":"`...)
	buf = r.At.UTC().AppendFormat(buf, TimeLayout)
	buf = append(buf, `","actor":`...)
	buf = appendJSONString(buf, r.Actor)
	buf = append(buf, `,"action":`...)
	buf = appendJSONString(buf, r.Action)
	buf = append(buf, `,"subject":`...)
	buf = appendJSONString(buf, r.Subject)
	buf = append(buf, `,"details":`...)
	// What the encoder does with a json.RawMessage without HTML escaping: compact it, refusing invalid JSON.
	details := bytes.NewBuffer(buf)
	if err := json.Compact(details, []byte(r.Details)); err != nil {
		return nil, errors.New("details are not valid JSON")
	}
	return append(details.Bytes(), '}'), nil
}

// appendJSONString appends s as encoding/json writes it without HTML escaping: as it is between quotes when
// it is printable ASCII with no quote or backslash (ids, actions, subjects), else through the encoder.
func appendJSONString(buf []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			var b bytes.Buffer
			enc := json.NewEncoder(&b)
			enc.SetEscapeHTML(false)
			_ = enc.Encode(s) // a string always encodes
			return append(buf, bytes.TrimSuffix(b.Bytes(), []byte("\n"))...)
		}
	}
	buf = append(buf, '"')
	buf = append(buf, s...)
	return append(buf, '"')
}

// ContentHash is the hash of a row's content alone, stored when it is inserted: SHA-256 of its canonical
// form with seq 0. The chainer refuses to link a row whose content no longer matches it.
func ContentHash(r Row) (string, error) {
	r.Seq = 0
	c, err := Canonical(r)
	if err != nil {
		return "", err
	}
	h := sha256.Sum256(c)
	return hex.EncodeToString(h[:]), nil
}

// RowHash computes a row's hash from its prev_hash and content.
func RowHash(r Row) (string, error) {
	prev, err := hex.DecodeString(r.PrevHash)
	if err != nil || len(prev) != sha256.Size {
		return "", errors.New("prev_hash is not a SHA-256 hex digest")
	}
	c, err := Canonical(r)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	h.Write(prev)
	h.Write(c)
	return hex.EncodeToString(h.Sum(nil)), nil
}
