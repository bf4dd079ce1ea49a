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

// linkDelay is how long a commit's wake waits before its run begins: the runs asked for by every commit made
// meanwhile become one. A run costs a transaction, a read of the head and the unlinked rows, and a write,
// whatever the number of rows it links; without the delay a process that commits one audited change at a
// time (a sign-in after another) paid a run per row, about a fifth of a sign-in's time on PostgreSQL. The
// delay is nobody's wait: the commits' callers have returned already, and a caller that needs the rows
// linked (Link, LinkedHead, store.Close) starts its run at once. It only lengthens, by this much, the
// instant a row spends unlinked, which Verify reports and tolerates up to LinkBound, and the syslog
// forwarder's latency.
var linkDelay = 20 * time.Millisecond

// linkBatch bounds the rows one linking transaction takes.
const linkBatch = 500

// insertUnlinked inserts r with no place in the chain yet: seq, prev_hash and hash stay NULL.
func insertUnlinked(tx *gorm.DB, r Row) error {
	q, args := unlinkedInsert(r, "")
	return tx.Exec(q, args...).Error
}

// unlinkedInsert is the INSERT of r, unlinked, and its arguments: once, or with from (" FROM <item>") once per
// row of that item.
func unlinkedInsert(r Row, from string) (string, []any) {
	return `INSERT INTO audit_events (at, actor, action, subject, details, content_hash, added_at)
		SELECT ?, ?, ?, ?, ?, ?, ?` + from, []any{r.At, r.Actor, r.Action, r.Subject, r.Details, r.ContentHash, r.AddedAt}
}

// InsertFrom returns, for PostgreSQL, the INSERT of ev's row, unlinked, once for each row of the query named
// from (a data-modifying WITH of the caller's statement, such as "WITH changed AS (UPDATE … RETURNING 1)"),
// and its arguments: the change and its audit row in one statement, so one transaction and one round trip
// instead of four (BEGIN, change, row, COMMIT). The statement commits both or neither (fail closed), and waits
// for its flush as every commit does. The caller then calls Committed, as store.Tx would after its commit.
func InsertFrom(ev Event, from string) (string, []any, error) {
	r, err := newRow(ev)
	if err != nil {
		return "", nil, err
	}
	q, args := unlinkedInsert(r, " FROM "+from)
	return q, args, nil
}

// Committed wakes db's chainer after a statement of InsertFrom committed, without waiting for it.
func Committed(ctx context.Context, db *gorm.DB) {
	linkAfterCommit(ctx, db)
}

// linkAfterCommit is what Append asks store.Tx to run after the commit: it wakes the pool's chainer and
// returns without waiting for it. The change is committed whatever happens next: a row the chainer fails to
// link is linked by a later run (the next commit's, or the server's LinkInterval sweep), and Verify reports it
// meanwhile.
func linkAfterCommit(_ context.Context, db *gorm.DB) {
	c, err := chainerOf(db)
	if err != nil {
		return // the pool is gone: the row waits for the next process's sweep
	}
	c.mu.Lock()
	c.wakeSoon(db)
	c.mu.Unlock()
}

// chainers holds the one chainer of each connection pool (each process's, in practice).
var chainers sync.Map // *sql.DB → *chainer

// chainer links the rows its process commits, one run after another, in a goroutine of its own that lives
// while there is something to link: a commit wakes it (linkDelay later: wakeSoon) and goes on, and each run
// links every row committed before it began, in batches of linkBatch, so that however many requests commit
// meanwhile, one run (one short transaction per batch) links them all. Nobody waits for it but Link's callers,
// who need a given commit's rows linked (the chain head as a signed anchor, tests, the LinkInterval sweep). It
// stops, its work done, when store.Close closes the pool.
type chainer struct {
	mu       sync.Mutex
	cond     *sync.Cond
	db       *gorm.DB    // the handle of the last wake
	running  bool        // the goroutine is alive
	wanted   uint64      // the last run asked for
	started  uint64      // runs begun
	finished uint64      // runs ended
	linked   int64       // rows the last run linked
	err      error       // the last run's error
	timer    *time.Timer // a delayed wake is pending (wakeSoon)
}

func chainerOf(db *gorm.DB) (*chainer, error) {
	sqlDB, err := db.DB()
	if err != nil {
		return nil, err
	}
	if v, ok := chainers.Load(sqlDB); ok {
		return v.(*chainer), nil
	}
	c := &chainer{}
	c.cond = sync.NewCond(&c.mu)
	v, loaded := chainers.LoadOrStore(sqlDB, c)
	if !loaded {
		err := store.BeforeClose(db, "audit.chainer", func() {
			c.stop()
			chainers.Delete(sqlDB)
		})
		if err != nil {
			return nil, err
		}
	}
	return v.(*chainer), nil
}

// wake asks for a run that begins after now, starting the goroutine if it is not alive, and returns the
// run's number: a run under way may have read the unlinked rows before the caller's commit. c.mu is held.
func (c *chainer) wake(db *gorm.DB) uint64 {
	c.db = db
	c.wanted = c.started + 1
	if !c.running {
		c.running = true
		go c.loop()
	}
	return c.wanted
}

// wakeSoon asks for a run that begins after now, linkDelay from now, unless a run already asked for will:
// a wake pending, or a run wanted that has not begun. A commit's wake (linkAfterCommit) uses it, so that a
// run links the rows of every commit made during the delay. c.mu is held.
func (c *chainer) wakeSoon(db *gorm.DB) {
	c.db = db
	if c.timer != nil || c.wanted > c.started {
		return
	}
	c.timer = time.AfterFunc(linkDelay, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.timer = nil
		c.wake(c.db)
	})
}

// cancelWakeSoon drops a pending wake that has not fired: the caller is asking for a run at once, which
// begins after every commit the pending wake was for. A wake already firing just asks for one more run. c.mu
// is held.
func (c *chainer) cancelWakeSoon() {
	if c.timer != nil && c.timer.Stop() {
		c.timer = nil
	}
}

// loop runs link runs while one is wanted, then ends.
func (c *chainer) loop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.started < c.wanted {
		c.started++
		run, db := c.started, c.db
		c.mu.Unlock()
		n, err := linkAll(context.WithValue(context.Background(), chainerKey{}, true), db)
		c.mu.Lock()
		c.finished, c.linked, c.err = run, n, err
		c.cond.Broadcast()
	}
	c.running = false
	c.cond.Broadcast()
}

type chainerKey struct{}

// ByChainer says whether ctx is the chainer's: a statement run with it is no caller's round trip (statement
// counts leave it out; it runs beside the callers, whenever a run is due).
func ByChainer(ctx context.Context) bool {
	v, _ := ctx.Value(chainerKey{}).(bool)
	return v
}

// stop waits until the goroutine has done the runs asked of it, a pending wake's included (started at once),
// and ended (store.Close calls it).
func (c *chainer) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.timer != nil && c.timer.Stop() {
		c.timer = nil
		c.wake(c.db) // a wake pending: its run now, the pool is about to close
	}
	for c.timer != nil || c.running { // a wake firing sets timer to nil and starts the goroutine
		c.cond.Wait()
	}
}

// Link links every committed unlinked row into the chain, in the order it finds them, and returns how many
// rows the run linked. It returns once a run of the pool's chainer that began after the call has ended, so
// the caller's own committed rows (and every other row committed before the call) are linked when it returns,
// unless it fails. A row whose content no longer matches its content hash is left unlinked and named in the
// error (wrapping ErrBroken): Verify reports it too.
func Link(ctx context.Context, db *gorm.DB) (int64, error) {
	c, err := chainerOf(db)
	if err != nil {
		return 0, fmt.Errorf("audit link: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cancelWakeSoon()
	want := c.wake(db)
	for c.finished < want {
		c.cond.Wait()
	}
	return c.linked, c.err
}

// LinkedHead links every row committed before the call (Link) and returns the head then: the head as an
// anchor that covers them. A signed decision's anchor and the officers' register name the chain's head
// outside the database; read without linking first, it would leave out the rows just committed (the request
// the officer decides on, the officer's own last actions), which the chainer links an instant later.
func LinkedHead(ctx context.Context, db *gorm.DB) (Anchor, error) {
	if err := linkCommitted(ctx, db); err != nil {
		return Anchor{}, err
	}
	return Head(ctx, db)
}

// linkCommitted links the rows committed before the call, on PostgreSQL (SQLite links every row in its
// change's transaction). Rows refused because they changed before linking (ErrBroken) are Verify's to report:
// the head is what it is without them.
func linkCommitted(ctx context.Context, db *gorm.DB) error {
	if store.DialectOf(db) != store.Postgres {
		return nil
	}
	if _, err := Link(ctx, db); err != nil && !errors.Is(err, ErrBroken) {
		return err
	}
	return nil
}

// linkAll runs linking transactions until no committed unlinked row is left. The work is nobody's request
// (the chainer runs it for every caller), so no request's cancellation cuts it short.
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
