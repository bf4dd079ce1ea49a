// Package store opens the gateway's database (PostgreSQL in production, an embedded SQLite file by default)
// and applies its versioned, per-dialect SQL migrations, embedded in the binary.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
	moderncsqlite "modernc.org/sqlite"
)

// Dialect names the database family; migrations and the few dialect-specific statements branch on it.
type Dialect string

const (
	Postgres Dialect = "postgres"
	SQLite   Dialect = "sqlite"
)

// DialectOf tells which database a gorm handle talks to.
func DialectOf(db *gorm.DB) Dialect {
	if db.Dialector.Name() == "postgres" {
		return Postgres
	}
	return SQLite
}

// IsPostgresURL says whether a --db value names a PostgreSQL server rather than an SQLite file.
func IsPostgresURL(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// Open connects to the database named by dsn: a postgres:// URL, or otherwise the path of an SQLite file.
// It does not migrate.
func Open(ctx context.Context, dsn string) (*gorm.DB, error) {
	cfg := &gorm.Config{
		// gorm's own logger prints SQL with its arguments, which may hold health data: silence it.
		Logger:                 logger.Discard,
		SkipDefaultTransaction: true,
		NowFunc:                func() time.Time { return time.Now().UTC() },
	}
	var (
		db  *gorm.DB
		err error
	)
	if IsPostgresURL(dsn) {
		db, err = gorm.Open(postgres.Open(dsn), cfg)
	} else {
		if err := privateFiles(dsn); err != nil {
			return nil, fmt.Errorf("open database: %w", err)
		}
		configureSQLitePageCache()
		pinSQLiteAllocatorPages()
		pool := sql.OpenDB(sqliteConnector{dsn: sqliteDSN(dsn), drv: &moderncsqlite.Driver{}})
		db, err = gorm.Open(sqliteDialect{conn: pool}, cfg)
		if err != nil {
			pool.Close()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	maxOpen := 32
	if DialectOf(db) == SQLite {
		// SQLite has one writer at a time; a handful of connections lets readers go on beside it (WAL) while
		// "BEGIN IMMEDIATE" makes writers queue on busy_timeout instead of failing on a lock upgrade.
		maxOpen = 4
	}
	sqlDB.SetMaxOpenConns(maxOpen)
	// As many idle connections as open ones: database/sql keeps two idle by default, so under load every
	// connection beyond the second was closed after its statement and opened again for the next (a PostgreSQL
	// backend forked, or an SQLite file opened and its pragmas run, per statement).
	sqlDB.SetMaxIdleConns(maxOpen)
	sqlDB.SetConnMaxIdleTime(5 * time.Minute)
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := sqlDB.PingContext(pingCtx); err != nil {
		sqlDB.Close()
		return nil, fmt.Errorf("connect to database: %w", err)
	}
	return db, nil
}

// sqliteDSN adds the pragmas every connection needs: foreign keys on, WAL so readers do not block the writer,
// a busy timeout so writers wait their turn, and immediate transactions so a transaction that will write takes
// the write lock at BEGIN (a deferred one could deadlock when two readers both try to upgrade).
//
// _time_format=sqlite: times are written as "2006-01-02 15:04:05.999999999-07:00", as glebarez/go-sqlite (the
// driver until 2 December 2026) wrote them, so that the text of times written before and after compares and
// sorts alike; modernc.org/sqlite would otherwise write Go's time.Time.String.
//
// synchronous(FULL): every commit is on disk (the WAL fsynced) before it returns. With WAL's usual NORMAL a
// commit survives the process dying but not a power loss or an OS crash, which may roll back the last
// transactions: a claim whose extract was already streamed would then come back unclaimed, and be retrievable
// a second time, with its audit row gone. One time must survive the machine going down, so every commit pays
// its fsync (about 0.5 ms on these machines; SQLite has one writer, so this caps writes near two thousand
// commits a second, far above what a hospital's requests need). PostgreSQL commits are durable by default
// (synchronous_commit on); only the transactions store.NoFlushWaitJoin names skip the wait there.
//
// mmap_size(0): pages are read with a pread each, not through a memory map, stated rather than left to the
// build's default. A map (256 MiB, from 1 December 2026) made one large retrieval faster, but in WAL mode a
// connection whose read transaction finds the database changed by another connection unmaps the whole file
// (pagerBeginReadTransaction: sqlite3OsUnfetch) and maps it again on its next read, page faults included; a
// retrieval commits twice, so under concurrent load nearly every statement paid a munmap, an mmap and a fault
// per page it touched. Under bench-peer's load at c = 8 that was 14 % of the server's CPU (unmapping 7 %,
// faulting pages in 6 %). Measured on 2 December 2026, alternating runs on one machine, SQLite, server CPU per
// retrieval of the 87 KB extract at c = 8: 10.35 and 9.21 ms with the map, 7.58 and 6.00 ms without (128 and
// 145 against 163 and 221 retrievals/s); the 2,000-entry extract alone: 79.1 and 91.6 MB/s with it, 76.9 and
// 75.9 without. The many concurrent retrievals are what a hospital's gateway serves; the map is off.
//
// page_size(8192): a database this gateway creates has 8 KiB pages, SQLite's default being 4 KiB. Without a
// map every page a statement touches after another connection's commit is read again with a pread of its own
// (the cache is emptied: see above), and those reads were 9.6 % of the server's CPU under bench-peer's load
// (SQLite, c = 8); an extract's entries, imported together, lie next to each other in the table, on half as
// many pages, and its index look-ups go through fewer of them. A commit writes whole pages to the WAL, so a
// larger page writes more bytes for the same few rows (a claim touches about eight pages: the extract, the
// audit row and its indexes, the chain head); 16 KiB pages read as fast and wrote twice as much. Measured on
// 2 December 2026, alternating runs on one machine, server CPU a retrieval: the 2,000-entry extract 34.7 and
// 36.8 ms with 16 KiB pages against 43.2 and 40.0 ms with 4 KiB (94.4 and 90.5 MB/s against 81.6 and 86.7);
// then 8 KiB against 16 KiB, 35.3, 32.1 and 34.7 ms against 31.6, 33.7 and 33.2 ms (100.1 to 107.3 MB/s
// against 101.5 to 109.0), and the 87 KB extract at c = 8 3.16, 3.35 and 4.49 ms against 3.35, 4.15 and
// 5.21 ms. SQLite fixes the page size when it creates the file (and for good once WAL mode is on, which is
// why the journal mode is set by _journal_mode, applied after the _pragma list): a database created before
// keeps its 4 KiB pages and works as it did (TestSQLiteOlderDatabaseKeepsItsPages).
func sqliteDSN(path string) string {
	q := url.Values{}
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "page_size(8192)")
	q.Set("_journal_mode", "WAL")
	q.Add("_pragma", "busy_timeout(30000)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "mmap_size(0)")
	q.Set("_txlock", "immediate")
	q.Set("_time_format", "sqlite")
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	return "file:" + path + sep + q.Encode()
}

// Close runs the work registered with BeforeClose for the pool, then closes it.
func Close(db *gorm.DB) error {
	sqlDB, err := db.DB()
	if err != nil {
		return err
	}
	if v, ok := beforeClose.LoadAndDelete(sqlDB); ok {
		for _, fn := range v.(*closeWork).list() {
			fn()
		}
	}
	return sqlDB.Close()
}

// beforeClose holds, per connection pool, the work Close runs before closing it.
var beforeClose sync.Map // *sql.DB → *closeWork

type closeWork struct {
	mu  sync.Mutex
	fns map[string]func()
	ord []string
}

func (w *closeWork) list() []func() {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]func(), 0, len(w.ord))
	for _, k := range w.ord {
		out = append(out, w.fns[k])
	}
	return out
}

// BeforeClose asks that fn run when Close closes db's connection pool, while the pool still works; work
// registered twice under one key runs once. A package that keeps a goroutine working on the pool (the audit
// chain's linker) stops it there, having finished its work: a process that closes its database leaves
// nothing half done behind, and tests leak no goroutine.
func BeforeClose(db *gorm.DB, key string, fn func()) error {
	sqlDB, err := db.DB()
	if err != nil {
		return err
	}
	v, _ := beforeClose.LoadOrStore(sqlDB, &closeWork{fns: map[string]func(){}})
	w := v.(*closeWork)
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.fns[key]; !ok {
		w.ord = append(w.ord, key)
	}
	w.fns[key] = fn
	return nil
}

// Ping checks that the database answers; /readyz uses it.
func Ping(ctx context.Context, db *gorm.DB) error {
	sqlDB, err := db.DB()
	if err != nil {
		return err
	}
	return sqlDB.PingContext(ctx)
}

// Tx runs fn in one transaction: committed if fn returns nil, rolled back otherwise. Every state change and
// its audit row go through one call of Tx, so neither survives without the other. Work registered with
// AfterCommit runs once the transaction has committed, before Tx returns; a Tx inside another one (a
// savepoint) leaves it to the outer transaction's commit.
func Tx(ctx context.Context, db *gorm.DB, fn func(tx *gorm.DB) error) error {
	if inTransaction(db) {
		// A savepoint: whatever runs after the commit is the outer transaction's to run, if Tx began it.
		if outer, ok := db.Statement.Context.Value(afterCommitKey{}).(*afterCommit); ok && !outer.done {
			ctx = context.WithValue(ctx, afterCommitKey{}, outer)
		}
		return db.WithContext(ctx).Transaction(fn, &sql.TxOptions{})
	}
	release, err := takeWriteLock(ctx, db)
	if err != nil {
		return err
	}
	ac := &afterCommit{db: db}
	err = db.WithContext(context.WithValue(ctx, afterCommitKey{}, ac)).Transaction(fn, &sql.TxOptions{})
	release()
	ac.done = true
	if err != nil {
		return err
	}
	for _, w := range ac.work {
		w.fn(ctx, db)
	}
	return nil
}

// writeLocks holds, per SQLite connection pool, the process's turn at SQLite's single write lock.
var writeLocks sync.Map // *sql.DB → chan struct{}

// writeLockWait is how long Tx waits for its turn on SQLite, as busy_timeout does for another process.
const writeLockWait = 30 * time.Second

// takeWriteLock gives the caller the process's turn at SQLite's write lock before BEGIN IMMEDIATE takes it
// (every transaction of Tx writes, or may). Without it, concurrent transactions of the process find the lock
// busy and SQLite's busy handler puts them to sleep (1, 2, 5, 10, ... 100 ms) instead of handing the lock on
// the moment it is released: at 8 concurrent retrievals, their claims and delivery records spent more time
// asleep than working. The turn is released at the commit, before the work registered with AfterCommit. Other
// processes on the same file (a CLI command beside the server) still meet busy_timeout. PostgreSQL needs none.
func takeWriteLock(ctx context.Context, db *gorm.DB) (release func(), err error) {
	if DialectOf(db) != SQLite {
		return func() {}, nil
	}
	sqlDB, err := db.DB()
	if err != nil {
		return nil, err
	}
	v, _ := writeLocks.LoadOrStore(sqlDB, make(chan struct{}, 1))
	turn := v.(chan struct{})
	select {
	case turn <- struct{}{}:
		return func() { <-turn }, nil
	default:
	}
	wait := time.NewTimer(writeLockWait)
	defer wait.Stop()
	select {
	case turn <- struct{}{}:
		return func() { <-turn }, nil
	case <-wait.C:
		return nil, fmt.Errorf("begin transaction: waited %s for the SQLite write lock", writeLockWait)
	case <-ctx.Done():
		return nil, fmt.Errorf("begin transaction: %w", ctx.Err())
	}
}

type afterCommitKey struct{}

// afterCommit is the work a transaction begun by Tx runs once committed, once per key.
type afterCommit struct {
	db   *gorm.DB
	work []struct {
		key string
		fn  func(context.Context, *gorm.DB)
	}
	done bool
}

// AfterCommit asks that fn run once tx, a transaction begun by Tx, has committed (never when it rolls back),
// with the database handle Tx was given; work registered twice under one key runs once. It returns false
// when tx did not come from Tx (or its context was replaced): the caller must then do without.
func AfterCommit(tx *gorm.DB, key string, fn func(ctx context.Context, db *gorm.DB)) bool {
	if tx.Statement == nil || tx.Statement.Context == nil {
		return false
	}
	ac, ok := tx.Statement.Context.Value(afterCommitKey{}).(*afterCommit)
	if !ok || ac.done || !inTransaction(tx) {
		return false
	}
	for _, w := range ac.work {
		if w.key == key {
			return true
		}
	}
	ac.work = append(ac.work, struct {
		key string
		fn  func(context.Context, *gorm.DB)
	}{key, fn})
	return true
}

// inTransaction says whether db runs its statements inside a transaction.
func inTransaction(db *gorm.DB) bool {
	_, ok := db.Statement.ConnPool.(gorm.TxCommitter)
	return ok
}

// privateFiles creates the SQLite file mode 0600 before SQLite does (SQLite would follow the umask, often
// 0644), and narrows an existing file and its -wal and -shm to 0600: they hold the audit chain and sealed
// records, readable by the gateway's user only. SQLite gives -wal and -shm the database file's mode.
func privateFiles(dsn string) error {
	path, _, _ := strings.Cut(strings.TrimPrefix(dsn, "file:"), "?")
	if path == "" || strings.Contains(path, ":memory:") {
		return nil
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	f.Close()
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		st, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		if st.Mode().Perm()&0o077 != 0 {
			if err := os.Chmod(p, 0o600); err != nil {
				return err
			}
		}
	}
	return nil
}
