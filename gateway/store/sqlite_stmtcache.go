package store

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"

	moderncsqlite "modernc.org/sqlite"
)

// SQLite compiles a statement's text into a program (sqlite3_prepare) before running it, and a driver given a
// statement's text compiles it at every execution and throws the program away after it: under bench-peer's
// retrieval load at c = 8 that compilation (SQLite's parser and code generator) was 13.5 % of the server's CPU
// (issue 15, profile of 2 December 2026). modernc.org/sqlite keeps the program of a statement prepared
// through its Prepare and runs it again, reset, at each execution; but database/sql prepares only what it is
// asked to, and gorm's cache of prepared statements (PrepareStmt) prepares them again in every transaction,
// where the gateway's writes all are (measured: parsing 5.5 % with it). So the gateway's SQLite connections
// keep their own: each connection maps a statement's text to its prepared statement and runs it from there,
// in a transaction or not.
//
// A connection is used by one goroutine at a time (database/sql's contract), so its cache needs no lock. A
// cached statement whose rows are still open (a query inside the iteration of the same query) is busy: the
// statement runs uncached beside it. The cache holds at most stmtCacheSize statements; a new one then takes
// the place of one idle statement. Statements built with a varying number of parameters (IN lists) would
// otherwise grow it without end.

// stmtCacheSize is how many prepared statements each SQLite connection keeps: the gateway's hot statements are
// a few dozen.
const stmtCacheSize = 128

// sqliteConnector opens modernc.org/sqlite connections that keep their prepared statements.
type sqliteConnector struct {
	dsn string
	drv *moderncsqlite.Driver
}

func (c sqliteConnector) Connect(context.Context) (driver.Conn, error) {
	conn, err := c.drv.Open(c.dsn)
	if err != nil {
		return nil, err
	}
	sc, ok := conn.(sqliteConn)
	if !ok {
		conn.Close()
		return nil, fmt.Errorf("a %T connection, not modernc.org/sqlite's", conn)
	}
	return &cachingConn{sqliteConn: sc, stmts: map[string]*cachedStmt{}}, nil
}

func (c sqliteConnector) Driver() driver.Driver { return c.drv }

// sqliteConn is what modernc.org/sqlite's connection does that the gateway uses.
type sqliteConn interface {
	driver.Conn
	driver.ConnBeginTx
	driver.ConnPrepareContext
	driver.ExecerContext
	driver.QueryerContext
	driver.Pinger
	driver.SessionResetter
	driver.Validator
}

type cachingConn struct {
	sqliteConn
	stmts map[string]*cachedStmt
	// prepared counts the statements this connection compiled for its cache (the tests read it).
	prepared int
}

type cachedStmt struct {
	stmt interface {
		driver.Stmt
		driver.StmtExecContext
		driver.StmtQueryContext
	}
	busy bool
}

// cached returns query's prepared statement, preparing it if it is not cached yet, or nil if the statement is
// busy (its rows open) or cannot be prepared alone (the caller then runs it uncached, and reports its errors).
func (c *cachingConn) cached(ctx context.Context, query string) *cachedStmt {
	if s, ok := c.stmts[query]; ok {
		if s.busy {
			return nil
		}
		return s
	}
	ds, err := c.PrepareContext(ctx, query)
	if err != nil {
		return nil
	}
	c.prepared++
	st, ok := ds.(interface {
		driver.Stmt
		driver.StmtExecContext
		driver.StmtQueryContext
	})
	if !ok {
		ds.Close()
		return nil
	}
	if len(c.stmts) >= stmtCacheSize {
		for q, old := range c.stmts { // the map's order: an idle statement, any one
			if !old.busy {
				old.stmt.Close()
				delete(c.stmts, q)
				break
			}
		}
	}
	s := &cachedStmt{stmt: st}
	c.stmts[query] = s
	return s
}

func (c *cachingConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	s := c.cached(ctx, query)
	if s == nil {
		return c.sqliteConn.ExecContext(ctx, query, args)
	}
	s.busy = true
	defer func() { s.busy = false }()
	return s.stmt.ExecContext(ctx, args)
}

func (c *cachingConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	s := c.cached(ctx, query)
	if s == nil {
		return c.sqliteConn.QueryContext(ctx, query, args)
	}
	s.busy = true
	rows, err := s.stmt.QueryContext(ctx, args)
	if err != nil {
		s.busy = false
		return nil, err
	}
	sr, ok := rows.(sqliteRows)
	if !ok { // not modernc.org/sqlite's rows as this file knows them: run it uncached
		rows.Close()
		s.busy = false
		return c.sqliteConn.QueryContext(ctx, query, args)
	}
	return &cachedRows{sqliteRows: sr, stmt: s}, nil
}

// Close finalizes the connection's statements before closing it: SQLite will not close a connection with
// statements still prepared on it.
func (c *cachingConn) Close() error {
	var errs []error
	for q, s := range c.stmts {
		errs = append(errs, s.stmt.Close())
		delete(c.stmts, q)
	}
	return errors.Join(append(errs, c.sqliteConn.Close())...)
}

// sqliteRows is what modernc.org/sqlite's rows tell of their columns; cachedRows passes it on, so that
// database/sql's ColumnTypes (which gorm reads to scan) says the same with the cache as without it.
type sqliteRows interface {
	driver.Rows
	driver.RowsColumnTypeDatabaseTypeName
	driver.RowsColumnTypeLength
	driver.RowsColumnTypeNullable
	driver.RowsColumnTypePrecisionScale
	driver.RowsColumnTypeScanType
}

// cachedRows are a cached statement's rows: closing them (which resets the statement) makes it idle again.
type cachedRows struct {
	sqliteRows
	stmt *cachedStmt
}

func (r *cachedRows) Close() error {
	err := r.sqliteRows.Close()
	r.stmt.busy = false
	return err
}
