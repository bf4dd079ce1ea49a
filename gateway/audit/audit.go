// Package audit keeps the tamper-evident audit log: a hash chain of events, each appended in the same database
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
package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
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

// Row is one stored audit event.
type Row struct {
	Seq      int64
	At       time.Time
	Actor    string
	Action   string
	Subject  string
	Details  string
	PrevHash string
	Hash     string
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
func Append(tx *gorm.DB, ev Event) error {
	at := ev.At
	if at.IsZero() {
		at = time.Now()
	}
	at = at.UTC().Truncate(time.Microsecond)
	details, err := marshalDetails(ev.Details)
	if err != nil {
		return fmt.Errorf("audit %s: %w", ev.Action, err)
	}
	// Taking the head row for update serializes appenders on PostgreSQL; on SQLite the transaction already
	// holds the database's single write lock (BEGIN IMMEDIATE).
	var head struct {
		Seq  int64
		Hash string
	}
	q := "SELECT seq, hash FROM audit_head WHERE id = 1"
	if store.DialectOf(tx) == store.Postgres {
		q += " FOR UPDATE"
	}
	if err := tx.Raw(q).Scan(&head).Error; err != nil {
		return fmt.Errorf("audit %s: read chain head: %w: %w", ev.Action, ErrUnavailable, err)
	}
	if head.Hash == "" {
		return fmt.Errorf("audit %s: chain head missing (database not migrated?)", ev.Action)
	}
	row := Row{Seq: head.Seq + 1, At: at, Actor: ev.Actor, Action: ev.Action, Subject: ev.Subject,
		Details: details, PrevHash: head.Hash}
	row.Hash, err = RowHash(row)
	if err != nil {
		return fmt.Errorf("audit %s: %w", ev.Action, err)
	}
	if err := tx.Create(&row).Error; err != nil {
		return fmt.Errorf("audit %s: insert row: %w: %w", ev.Action, ErrUnavailable, err)
	}
	res := tx.Exec("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1 AND seq = ?", row.Seq, row.Hash, head.Seq)
	if res.Error != nil {
		return fmt.Errorf("audit %s: move chain head: %w: %w", ev.Action, ErrUnavailable, res.Error)
	}
	if res.RowsAffected != 1 {
		return fmt.Errorf("audit %s: chain head moved under us", ev.Action)
	}
	return nil
}

// Record appends ev in a transaction of its own, for events that come with no other change (server start,
// a refused client, ...).
func Record(ctx context.Context, db *gorm.DB, ev Event) error {
	return store.Tx(ctx, db, func(tx *gorm.DB) error { return Append(tx, ev) })
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

// Canonical returns the bytes a row's hash covers (see the package comment).
func Canonical(r Row) ([]byte, error) {
	if !json.Valid([]byte(r.Details)) {
		return nil, errors.New("details are not valid JSON")
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	err := enc.Encode(struct {
		Seq     int64           `json:"seq"`
		At      string          `json:"at"`
		Actor   string          `json:"actor"`
		Action  string          `json:"action"`
		Subject string          `json:"subject"`
		Details json.RawMessage `json:"details"`
	}{r.Seq, r.At.UTC().Format(TimeLayout), r.Actor, r.Action, r.Subject, json.RawMessage(r.Details)})
	if err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
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
