package audit

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"gorm.io/gorm"
)

// ExportRow is one line of an export: the stored row, with details as JSON rather than a string, so that a
// SIEM can index it and anyone can recompute the hash (RowHash of the same fields).
type ExportRow struct {
	Seq      int64           `json:"seq"`
	At       string          `json:"at"`
	Actor    string          `json:"actor"`
	Action   string          `json:"action"`
	Subject  string          `json:"subject"`
	Details  json.RawMessage `json:"details"`
	PrevHash string          `json:"prev_hash"`
	Hash     string          `json:"hash"`
}

// Row turns an exported line back into a stored row (to check its hash).
func (e ExportRow) Row() (Row, error) {
	at, err := time.Parse(TimeLayout, e.At)
	if err != nil {
		return Row{}, fmt.Errorf("row %d: at: %w", e.Seq, err)
	}
	return Row{Seq: e.Seq, At: at, Actor: e.Actor, Action: e.Action, Subject: e.Subject, Details: string(e.Details),
		PrevHash: e.PrevHash, Hash: e.Hash}, nil
}

// Export writes the held rows at or after since as JSON Lines, in chain order, and returns how many. It stops
// at the head as it stood when it began, once on disk (DurableHead), having first linked the rows committed
// before it (an export taken right after a change holds it, though the chainer links it an instant later).
func Export(ctx context.Context, db *gorm.DB, since time.Time, w io.Writer) (int64, error) {
	if err := linkCommitted(ctx, db); err != nil {
		return 0, err
	}
	head, err := DurableHead(ctx, db)
	if err != nil {
		return 0, err
	}
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	var n, after int64
	for {
		var rows []Row
		if err := db.WithContext(ctx).Where("seq > ? AND seq <= ? AND at >= ?", after, head.Seq, since.UTC()).Order("seq").Limit(verifyBatch).
			Find(&rows).Error; err != nil {
			return n, fmt.Errorf("read audit rows: %w", err)
		}
		for _, r := range rows {
			if err := enc.Encode(ExportRow{Seq: r.Seq, At: r.At.UTC().Format(TimeLayout), Actor: r.Actor, Action: r.Action,
				Subject: r.Subject, Details: json.RawMessage(r.Details), PrevHash: r.PrevHash, Hash: r.Hash}); err != nil {
				return n, fmt.Errorf("write export: %w", err)
			}
			n++
			after = r.Seq
		}
		if len(rows) < verifyBatch {
			break
		}
	}
	return n, bw.Flush()
}
