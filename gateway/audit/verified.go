package audit

// A patient's access history says whether the audit chain verified. Walking the whole chain for every print
// took half of a print at a few thousand rows, and would take minutes at the millions of rows a hospital holds
// after some years. So the process remembers what it verified, in memory only (the database is what an
// attacker would edit), and a print checks what it shows:
//
//   - The server walks the whole chain at start and every WalkInterval, in the background (Walk); the first
//     print walks it itself if no walk has ended yet. A whole walk goes as Verify goes (from the retention
//     checkpoint) and keeps, for every row it verified, a fingerprint of its hash (its first 16 bytes), and
//     the last row verified (seq and hash). A later print walks only the rows linked since, from that remembered row: the
//     first of them must name the remembered hash as its prev_hash, whatever the database says now.
//   - Every audit row the history cites (its trail) is read whole and re-hashed now, with the prev_hash it
//     holds; the hash must match the fingerprint remembered for its seq. The fingerprint pins both the row's
//     content and its link, so a cited row edited after it was verified is caught whatever else the attacker
//     rewrote (its stored hash, the next row's prev_hash, the rest of the chain): only a second preimage of a
//     128-bit truncated SHA-256 would pass. This is stronger than checking the row's link to the next row
//     (an attacker rewriting the row, its hash and the next row's prev_hash would pass that). A cited row not
//     linked yet is checked against its content hash, as Verify checks it.
//   - A row edited before the remembered row that the history does NOT cite is not this print's business: the
//     page says what was verified and when ("from the start to row N; the whole chain walked at T; the rows
//     of this history re-checked now"), and such an edit is caught by the next whole walk: `gatewayd audit
//     verify`, the server's next background walk (WalkInterval), or its walk after a restart.
//
// Memory: 16 bytes per held row (16 MB per million rows), per database pool. Retention moving the checkpoint
// forward to a row this process verified only drops the fingerprints before it; any other move of the
// checkpoint (backwards, or to a row it does not know) makes the next print walk the whole chain again.

import (
	"context"
	"database/sql"
	"encoding/hex"
	"fmt"
	"slices"
	"sync"
	"time"

	"gorm.io/gorm"
)

// fingerprint is the first half of a row's SHA-256 hash, as a print remembers the rows it verified.
type fingerprint [16]byte

// fingerprintOf returns the fingerprint of a hex hash; ok is false when it is not one.
func fingerprintOf(hash string) (f fingerprint, ok bool) {
	if len(hash) != 64 {
		return f, false
	}
	_, err := hex.Decode(f[:], []byte(hash[:32]))
	return f, err == nil
}

// verifiedChain is what one process verified of one database's chain.
type verifiedChain struct {
	mu sync.Mutex
	verified
}

// verified is a verified stretch of the chain, as remembered.
type verified struct {
	cp       Checkpoint    // the retention checkpoint the fingerprints start after
	prints   []fingerprint // prints[i] is row cp.Seq+1+i
	last     Anchor        // the last row verified
	walkedAt time.Time     // when the whole chain was last walked (zero: never, by this process)
	walkedTo int64         // the last row that walk reached
}

// verifiedChains holds one verifiedChain per connection pool (one per database a process opens).
var verifiedChains sync.Map // *sql.DB → *verifiedChain

// TrailCheck says what CheckTrail verified: the chain from its start (the retention checkpoint) to Through,
// the head when checked, by a whole walk at WalkedAt up to row WalkedTo and the rows after it since; and the
// Rechecked rows of the trail, re-hashed now.
type TrailCheck struct {
	Through   Anchor
	Rows      int64 // rows held from the checkpoint to Through
	WalkedAt  time.Time
	WalkedTo  int64
	Walked    int64 // rows this call walked: the whole chain, or those linked since the last call
	Rechecked int
	Unlinked  int64 // rows committed an instant ago and not linked yet (intact)
}

// CheckTrail returns the events about the subjects, held rows and purged rows' summaries alike, in chain
// order, and checks them and the chain as the file's comment says. The subjects are what the statement
// subjects selects (one text column; args its arguments), evaluated by the database with the read, so that a
// caller can check a trail while it reads what the trail is about. A chain or a cited row that does not fit
// returns a *BrokenRowError (the first such row in chain order) and no events: the caller reads what is held
// with Trail.
func CheckTrail(ctx context.Context, db *gorm.DB, subjects string, args ...any) (TrailCheck, []TrailEvent, error) {
	vc, err := verifiedOf(db)
	if err != nil {
		return TrailCheck{}, nil, err
	}
	// One check at a time per process: each extends what the last verified (printings are human acts).
	vc.mu.Lock()
	defer vc.mu.Unlock()
	walked, unlinked, err := vc.extend(ctx, db)
	if err != nil {
		return TrailCheck{}, nil, err
	}
	// The rows are re-checked as they are read (the hashing overlaps the database sending the next rows). A
	// row linked after the walk above (an instant ago) waits for a second walk.
	var events []TrailEvent
	var later []Row
	var bad *BrokenRowError
	keep := func(b *BrokenRowError) {
		if b != nil && (bad == nil || b.Seq < bad.Seq) {
			bad = b
		}
	}
	err = trailRows(ctx, db, subjects, args, func(r Row) {
		if r.Seq > vc.last.Seq {
			later = append(later, r)
		} else {
			keep(vc.recheck(r))
		}
		events = append(events, TrailEvent{Seq: r.Seq, At: r.At, Actor: r.Actor, Action: r.Action, Subject: r.Subject})
	})
	if err != nil {
		return TrailCheck{}, nil, err
	}
	if len(later) > 0 {
		n, u, err := vc.extend(ctx, db)
		if err != nil {
			return TrailCheck{}, nil, err
		}
		walked, unlinked = walked+n, u
		for _, r := range later {
			keep(vc.recheck(r))
		}
	}
	if bad != nil {
		return TrailCheck{}, nil, bad
	}
	check := TrailCheck{Through: vc.last, Rows: vc.last.Seq - vc.cp.Seq, WalkedAt: vc.walkedAt, WalkedTo: vc.walkedTo,
		Walked: walked, Rechecked: len(events), Unlinked: unlinked}
	if vc.cp.Seq > 0 { // something was purged: its summaries about the subjects
		summarised, err := summariesIn(ctx, db, "("+subjects+")", args...)
		if err != nil {
			return TrailCheck{}, nil, err
		}
		events = append(events, summarised...)
	}
	return check, inChainOrder(events), nil
}

// extend verifies the rows linked since the last row verified, or the whole chain when there is no such row
// (the first print of the process) or the retention checkpoint moved to a row this process did not verify.
// It returns the rows walked and the unlinked rows seen. A chain that does not fit leaves what was verified
// before as it was.
func (vc *verifiedChain) extend(ctx context.Context, db *gorm.DB) (walked, unlinked int64, err error) {
	cp, err := ReadCheckpoint(ctx, db)
	if err != nil {
		return 0, 0, err
	}
	if !vc.follows(cp) {
		whole, res, err := walkWhole(ctx, db, cp)
		vc.verified = whole // nothing, when the chain does not fit
		return res.Rows, res.Unlinked, err
	}
	var prints []fingerprint
	res, err := walkFrom(ctx, db, cp, vc.last, func(r Row) {
		f, _ := fingerprintOf(r.Hash)
		prints = append(prints, f)
	})
	if err != nil {
		return 0, 0, err
	}
	vc.prints = append(vc.prints, prints...)
	vc.last = Anchor{Seq: vc.last.Seq + res.Rows, Hash: res.Head}
	return res.Rows, res.Unlinked, nil
}

// walkWhole walks the whole chain from the retention checkpoint cp as Verify does, and returns it as verified
// (nothing when it does not fit).
func walkWhole(ctx context.Context, db *gorm.DB, cp Checkpoint) (verified, VerifyResult, error) {
	var prints []fingerprint
	res, err := walkFrom(ctx, db, cp, Anchor{Seq: cp.Seq, Hash: cp.Hash}, func(r Row) {
		f, _ := fingerprintOf(r.Hash) // walked rows' hashes were recomputed: hex digests
		prints = append(prints, f)
	})
	if err != nil {
		return verified{}, res, err
	}
	last := Anchor{Seq: cp.Seq + res.Rows, Hash: res.Head}
	return verified{cp: cp, prints: prints, last: last, walkedAt: time.Now().UTC(), walkedTo: last.Seq}, res, nil
}

// WalkInterval is how often a server walks the whole chain again in the background (Walk).
const WalkInterval = 6 * time.Hour

// Walk walks the whole chain as Verify does and makes it what this process remembers as verified, so that
// printings after it walk only the rows linked since. A server runs it at start and every WalkInterval, in
// the background: the first printing need not walk the whole chain, and a row changed before the remembered
// row that no printing cites is found within WalkInterval. A chain that does not fit is forgotten (the next
// printing walks the whole chain and says where it broke) and the error returned. Printings go on during the
// walk with what was remembered before it.
func Walk(ctx context.Context, db *gorm.DB) (VerifyResult, error) {
	vc, err := verifiedOf(db)
	if err != nil {
		return VerifyResult{}, err
	}
	cp, err := ReadCheckpoint(ctx, db)
	if err != nil {
		return VerifyResult{}, err
	}
	whole, res, err := walkWhole(ctx, db, cp)
	vc.mu.Lock()
	defer vc.mu.Unlock()
	vc.verified = whole
	return res, err
}

// verifiedOf is what this process verified of db's chain.
func verifiedOf(db *gorm.DB) (*verifiedChain, error) {
	sqlDB, err := db.DB()
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	v, _ := verifiedChains.LoadOrStore(sqlDB, &verifiedChain{})
	return v.(*verifiedChain), nil
}

// follows says whether the rows after the last one verified can be walked alone under the checkpoint cp: a
// whole walk was done, and cp is the one it started from or a row it verified since (retention purged the
// rows up to it: their fingerprints go).
func (vc *verifiedChain) follows(cp Checkpoint) bool {
	switch {
	case vc.walkedAt.IsZero() || cp.Seq < vc.cp.Seq || cp.Seq > vc.last.Seq:
		return false
	case cp.Seq == vc.cp.Seq:
		return cp.Hash == vc.cp.Hash
	}
	f, ok := fingerprintOf(cp.Hash)
	if !ok || vc.prints[cp.Seq-vc.cp.Seq-1] != f {
		return false
	}
	vc.prints = slices.Clone(vc.prints[cp.Seq-vc.cp.Seq:])
	vc.cp = cp
	return true
}

// recheck says why a cited row r does not fit what was verified, or nil when it fits. The row is re-hashed
// with the prev_hash it holds now; the fingerprint remembered for its seq covers both its content and that
// link.
func (vc *verifiedChain) recheck(r Row) *BrokenRowError {
	if r.Seq == 0 { // not linked when read: its content against its content hash, as Verify checks it
		if h, err := ContentHash(r); err != nil || h != r.ContentHash {
			return &BrokenRowError{Seq: vc.last.Seq + 1, Reason: "an unlinked row of this history was changed before it was linked: its content does not match its content hash"}
		}
		return nil
	}
	if r.Seq <= vc.cp.Seq || r.Seq > vc.last.Seq {
		// Purged by retention while the history was read, or past the head: a row that cannot be re-checked
		// is not called intact.
		return &BrokenRowError{Seq: r.Seq, Reason: fmt.Sprintf("the row is outside the verified chain (rows %d to %d): print the history again", vc.cp.Seq+1, vc.last.Seq)}
	}
	h, err := RowHash(r)
	if err != nil {
		return &BrokenRowError{Seq: r.Seq, Reason: err.Error()}
	}
	if now, _ := fingerprintOf(h); now != vc.prints[r.Seq-vc.cp.Seq-1] {
		return &BrokenRowError{Seq: r.Seq, Reason: fmt.Sprintf("the row was changed after the chain was verified (%s): its content or its link no longer matches the hash verified then",
			vc.walkedAt.Format(time.RFC3339))}
	}
	return nil
}

// trailRows reads the held rows whose subject the statement subjects selects whole (content, link; the
// content hash of a row not linked yet), handing each to visit, in insertion order. Plain database/sql scans:
// a history may cite thousands of rows.
func trailRows(ctx context.Context, db *gorm.DB, subjects string, args []any, visit func(Row)) error {
	rows, err := db.WithContext(ctx).Raw(`SELECT seq, at, actor, action, subject, details, prev_hash,
		CASE WHEN seq IS NULL THEN content_hash END FROM audit_events WHERE subject IN (`+subjects+`) ORDER BY id`, args...).Rows()
	if err != nil {
		return fmt.Errorf("audit trail: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var r Row
		var seq sql.NullInt64
		var prev, content sql.NullString
		if err := rows.Scan(&seq, &r.At, &r.Actor, &r.Action, &r.Subject, &r.Details, &prev, &content); err != nil {
			return fmt.Errorf("audit trail: %w", err)
		}
		r.Seq, r.PrevHash, r.ContentHash = seq.Int64, prev.String, content.String
		visit(r)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("audit trail: %w", err)
	}
	return nil
}
