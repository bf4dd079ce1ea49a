package audit

import (
	"context"
	"sync"

	"gorm.io/gorm"

	"gatewayd/gateway/store"
)

// Group commit of UpdateOne on SQLite (issue 15). SQLite has one writer and waits for the disk at every commit
// (synchronous=FULL): each retrieval's claim and delivery record were a transaction each, and under concurrent
// retrievals the commits queued one behind the other, each paying its fsync and writing again the pages the
// one before it had just written (the chain head, the audit table's and its indexes' last pages).
//
// UpdateOnes that arrive while one is being committed now wait for it, then commit together: one transaction
// in which each runs its UPDATE and, if that changed its row, appends its audit row, exactly as it would alone
// (every change still commits with its audit row, or neither does), then one commit. Nobody waits for a batch
// to fill: a lone call commits at once, as before; a batch is what queued meanwhile, up to maxUpdateBatch.
// If anything in a batch fails (one audit row refused, say), the whole transaction rolls back and each of its
// calls runs again on its own, so that one call's failure is that call's only. A call whose context is done
// before its batch begins is not run (its error is the context's), as a transaction that could not begin.
//
// PostgreSQL needs none of this: there UpdateOne is one statement, and concurrent commits share their WAL
// flushes by themselves.

// maxUpdateBatch bounds a batch, so that one commit's transaction stays short under any load.
const maxUpdateBatch = 64

// updateOp is one UpdateOne call waiting for its batch.
type updateOp struct {
	ctx     context.Context
	db      *gorm.DB
	update  string
	args    []any
	ev      Event
	changed bool
	err     error
	done    chan struct{}
}

// updateBatcher queues the calls of one connection pool; a goroutine runs batches while calls are queued.
type updateBatcher struct {
	mu      sync.Mutex
	pending []*updateOp
	running bool
	// For tests: the calls queued so far, and the transactions run for batches.
	queued, batches int64
}

// updateBatchers holds each pool's batcher for the life of the process (a server has one pool; an idle batcher
// is a few words and no goroutine).
var updateBatchers sync.Map // *sql.DB → *updateBatcher

// batchedUpdateOne is UpdateOne on SQLite: through the pool's batcher, or on its own inside a caller's
// transaction (a batch runs in a transaction of its own, which the caller's change would not be part of).
func batchedUpdateOne(ctx context.Context, db *gorm.DB, update string, args []any, ev Event) (bool, error) {
	sqlDB, err := db.DB()
	if _, inTx := db.Statement.ConnPool.(gorm.TxCommitter); inTx || err != nil {
		return updateAlone(ctx, db, update, args, ev)
	}
	v, _ := updateBatchers.LoadOrStore(sqlDB, &updateBatcher{})
	b := v.(*updateBatcher)
	op := &updateOp{ctx: ctx, db: db, update: update, args: args, ev: ev, done: make(chan struct{})}
	b.mu.Lock()
	b.pending = append(b.pending, op)
	b.queued++
	if !b.running {
		b.running = true
		go b.run()
	}
	b.mu.Unlock()
	<-op.done
	return op.changed, op.err
}

// run commits batches until none is queued.
func (b *updateBatcher) run() {
	for {
		b.mu.Lock()
		n := min(len(b.pending), maxUpdateBatch)
		if n == 0 {
			b.running = false
			b.mu.Unlock()
			return
		}
		batch := append([]*updateOp(nil), b.pending[:n]...)
		b.pending = append(b.pending[:0], b.pending[n:]...)
		b.mu.Unlock()
		if runUpdateBatch(batch) {
			b.mu.Lock()
			b.batches++
			b.mu.Unlock()
		}
	}
}

// runUpdateBatch runs batch in one transaction (or each call on its own after a failure, see above), sets each
// call's result and releases it. It says whether it ran a transaction for the batch.
func runUpdateBatch(batch []*updateOp) bool {
	var live []*updateOp
	for _, op := range batch {
		if err := op.ctx.Err(); err != nil {
			op.err = err
			close(op.done)
			continue
		}
		live = append(live, op)
	}
	if len(live) == 0 {
		return false
	}
	// The batch's transaction is no one call's: a caller that goes away does not roll back the others.
	ctx := context.WithoutCancel(live[0].ctx)
	err := store.Tx(ctx, live[0].db, func(tx *gorm.DB) error {
		for _, op := range live {
			changed, err := updateAndAppend(ctx, tx, op.update, op.args, op.ev)
			if err != nil {
				return err
			}
			op.changed = changed
		}
		return nil
	})
	if err != nil && len(live) > 1 {
		for _, op := range live {
			op.changed, op.err = updateAlone(op.ctx, op.db, op.update, op.args, op.ev)
			close(op.done)
		}
		return true
	}
	for _, op := range live {
		op.changed, op.err = op.changed && err == nil, err
		close(op.done)
	}
	return true
}

// updateAlone is UpdateOne on SQLite in a transaction of its own (or the caller's).
func updateAlone(ctx context.Context, db *gorm.DB, update string, args []any, ev Event) (bool, error) {
	changed := false
	err := store.Tx(ctx, db, func(tx *gorm.DB) error {
		var err error
		changed, err = updateAndAppend(ctx, tx, update, args, ev)
		return err
	})
	return changed && err == nil, err
}

// updateAndAppend runs update in tx and, if it changed one row, appends ev.
func updateAndAppend(ctx context.Context, tx *gorm.DB, update string, args []any, ev Event) (bool, error) {
	n, err := store.Exec(ctx, tx, update, args...)
	if err != nil || n != 1 {
		return false, err
	}
	return true, Append(tx, ev)
}
