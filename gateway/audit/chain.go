package audit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"gorm.io/gorm"

	"gatewayd/gateway/store"
)

// LinkBound is how long a committed row may wait to be linked before Verify calls the chain broken. Rows are
// linked right after their transaction commits; a process that died in between leaves its rows to the next
// link, which every running server attempts every LinkInterval.
const LinkBound = time.Minute

// LinkInterval is how often a server links rows left unlinked by a process that stopped after its commit.
const LinkInterval = 10 * time.Second

// linkBatch bounds the rows one linking transaction takes.
const linkBatch = 500

// insertUnlinked inserts r with no place in the chain yet: seq, prev_hash and hash stay NULL.
func insertUnlinked(tx *gorm.DB, r Row) error {
	return tx.Exec(`INSERT INTO audit_events (at, actor, action, subject, details, content_hash, added_at)
		VALUES (?, ?, ?, ?, ?, ?, ?)`, r.At, r.Actor, r.Action, r.Subject, r.Details, r.ContentHash, r.AddedAt).Error
}

// linkAfterCommit is what Append asks store.Tx to run after the commit. The change is committed whatever
// happens here: a row this fails to link is linked by the next link (the server's LinkInterval), and Verify
// reports it meanwhile.
func linkAfterCommit(ctx context.Context, db *gorm.DB) {
	_, _ = Link(ctx, db)
}

// linkers holds one linker per connection pool, so that the goroutines of one process that all committed
// rows share link runs instead of each running its own.
var linkers sync.Map // *sql.DB → *linker

type linker struct {
	mu       sync.Mutex
	cond     *sync.Cond
	running  bool
	started  uint64 // runs begun
	finished uint64 // runs ended
	linked   int64  // rows the last run linked
	err      error  // the last run's error
}

// Link links every committed unlinked row into the chain, in the order it finds them, and returns how many
// rows the run linked. It returns once a link run that began after the call has ended, so the caller's own
// committed rows are linked when it returns (unless it fails). A row whose content no longer matches its
// content hash is left unlinked and named in the error (wrapping ErrBroken): Verify reports it too.
func Link(ctx context.Context, db *gorm.DB) (int64, error) {
	sqlDB, err := db.DB()
	if err != nil {
		return 0, fmt.Errorf("audit link: %w", err)
	}
	v, _ := linkers.LoadOrStore(sqlDB, &linker{})
	l := v.(*linker)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cond == nil {
		l.cond = sync.NewCond(&l.mu)
	}
	// A run already going may have read the unlinked rows before ours committed: wait for the next one.
	want := l.started + 1
	for l.finished < want {
		if l.running {
			l.cond.Wait()
			continue
		}
		l.running = true
		l.started++
		run := l.started
		l.mu.Unlock()
		n, err := linkAll(ctx, db)
		l.mu.Lock()
		l.running, l.finished, l.linked, l.err = false, run, n, err
		l.cond.Broadcast()
	}
	return l.linked, l.err
}

// linkAll runs linking transactions until no committed unlinked row is left. The work is not the caller's
// alone (other goroutines wait on it), so a cancelled request does not cut it short.
func linkAll(ctx context.Context, db *gorm.DB) (int64, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	var total int64
	var skipped []string
	conflicts := 0
	for {
		n, bad, more, err := linkOnce(ctx, db)
		if errors.Is(err, errChainMoved) && conflicts < maxLinkConflicts {
			conflicts++ // another instance linked first: read again
			continue
		}
		if err != nil {
			return total, fmt.Errorf("audit link: %w: %w", ErrUnavailable, err)
		}
		total += n
		skipped = append(skipped, bad...)
		if !more {
			break
		}
	}
	if len(skipped) > 0 {
		return total, fmt.Errorf("audit link: %w: rows %s changed before they were linked; left unlinked",
			ErrBroken, strings.Join(skipped, ", "))
	}
	return total, nil
}

// errChainMoved says another linker (another instance) moved the head between our read and our write.
var errChainMoved = errors.New("the chain moved while linking")

// maxLinkConflicts bounds the retries of one link run against other instances' linkers.
const maxLinkConflicts = 20

// linkOnce links up to linkBatch unlinked rows in one transaction: each gets the next seq, the head's hash as
// prev_hash and its chained hash, and the head moves to the last. It says whether a full batch was taken (more
// may wait) and which rows (ids) it left because their content changed.
//
// It takes no lock before reading (a lock statement would be one more round trip, and its commit a WAL flush
// even when there is nothing to link): the write is conditional instead. The head moves only from the seq
// read, and only if every row was still unlinked; the head row's lock and the unique seq make a concurrent
// linker (another instance) wait for ours and then fail its condition, or fail on a taken seq: either way it
// rolls back whole (errChainMoved) and reads again. On SQLite the transaction holds the write lock anyway.
func linkOnce(ctx context.Context, db *gorm.DB) (linked int64, bad []string, more bool, err error) {
	err = store.Tx(ctx, db, func(tx *gorm.DB) error {
		linked, bad, more = 0, nil, false
		// The head and the unlinked rows in one read (a LEFT JOIN, so the head comes without rows too). The
		// rows left because they were changed come first in id order: skip past them.
		rows, err := tx.Raw(`SELECT h.seq, h.hash, e.id, e.at, e.actor, e.action, e.subject, e.details, e.content_hash
			FROM audit_head h LEFT JOIN audit_events e ON e.seq IS NULL WHERE h.id = 1 ORDER BY e.id LIMIT ?`, linkBatch).Rows()
		if err != nil {
			return err
		}
		type linkedRow struct {
			id             int64
			seq            int64
			prevHash, hash string
		}
		var head Anchor
		var todo []linkedRow
		n := 0
		for rows.Next() {
			var id sql.NullInt64
			var at sql.NullTime
			var actor, action, subject, details, content sql.NullString
			if err := rows.Scan(&head.Seq, &head.Hash, &id, &at, &actor, &action, &subject, &details, &content); err != nil {
				rows.Close()
				return err
			}
			if !id.Valid {
				break
			}
			n++
			r := Row{At: at.Time, Actor: actor.String, Action: action.String, Subject: subject.String, Details: details.String}
			if h, err := ContentHash(r); err != nil || !content.Valid || h != content.String {
				bad = append(bad, fmt.Sprint(id.Int64))
				continue
			}
			prev := head.Hash
			if len(todo) > 0 {
				prev = todo[len(todo)-1].hash
			}
			r.Seq, r.PrevHash = head.Seq+int64(len(todo))+1, prev
			if r.Hash, err = RowHash(r); err != nil {
				rows.Close()
				return err
			}
			todo = append(todo, linkedRow{id.Int64, r.Seq, r.PrevHash, r.Hash})
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return err
		}
		if head.Hash == "" {
			return errors.New("chain head missing (database not migrated?)")
		}
		more = n == linkBatch && len(todo) > 0 // a batch of changed rows only would come back forever
		if len(todo) == 0 {
			return nil
		}
		last := todo[len(todo)-1]
		if store.DialectOf(tx) == store.Postgres {
			// The rows and the head in one statement: one round trip, whatever the batch, and one statement text
			// (arrays, not a VALUES list per batch size), so that pgx's cache of prepared statements keeps it.
			// The arrays hold numbers and hex digests only, written as array literals. The link is derived data, so
			// its commit does not wait for the WAL flush (store.NoFlushWaitJoin, in the same round trip; see the
			// package comment, "Durability of a link").
			ids, seqs, prevs, hashes := make([]string, len(todo)), make([]string, len(todo)), make([]string, len(todo)), make([]string, len(todo))
			for i, r := range todo {
				ids[i], seqs[i], prevs[i], hashes[i] = fmt.Sprint(r.id), fmt.Sprint(r.seq), r.prevHash, r.hash
			}
			array := func(v []string) string { return "{" + strings.Join(v, ",") + "}" }
			res := tx.Exec(`WITH linked AS (UPDATE audit_events AS e SET seq = v.seq, prev_hash = v.prev_hash, hash = v.hash
				FROM unnest(?::bigint[], ?::bigint[], ?::text[], ?::text[]) AS v (id, seq, prev_hash, hash)
				WHERE e.id = v.id AND e.seq IS NULL RETURNING 1)
				UPDATE audit_head SET seq = ?, hash = ?`+store.NoFlushWaitJoin(tx, "FROM")+`
				WHERE id = 1 AND seq = ? AND (SELECT COUNT(*) FROM linked) = ?`,
				array(ids), array(seqs), array(prevs), array(hashes), last.seq, last.hash, head.Seq, len(todo))
			if res.Error != nil {
				if strings.Contains(res.Error.Error(), "23505") { // unique_violation: the seq was taken meanwhile
					return fmt.Errorf("%w: %w", errChainMoved, res.Error)
				}
				return res.Error
			}
			if res.RowsAffected != 1 {
				return errChainMoved
			}
		} else {
			for _, r := range todo {
				res := tx.Exec("UPDATE audit_events SET seq = ?, prev_hash = ?, hash = ? WHERE id = ? AND seq IS NULL", r.seq, r.prevHash, r.hash, r.id)
				if res.Error != nil {
					return res.Error
				}
				if res.RowsAffected != 1 {
					return errChainMoved
				}
			}
			res := tx.Exec("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1 AND seq = ?", last.seq, last.hash, head.Seq)
			if res.Error != nil {
				return res.Error
			}
			if res.RowsAffected != 1 {
				return errChainMoved
			}
		}
		linked = int64(len(todo))
		return nil
	})
	return linked, bad, more, err
}

// Unlinked counts the committed rows not linked yet, without a transaction (a server's periodic link asks
// first, so that an idle database is not locked every LinkInterval).
func Unlinked(ctx context.Context, db *gorm.DB) (int64, error) {
	var n int64
	if err := db.WithContext(ctx).Raw("SELECT COUNT(*) FROM audit_events WHERE seq IS NULL").Scan(&n).Error; err != nil {
		return 0, fmt.Errorf("count unlinked audit rows: %w", err)
	}
	return n, nil
}
