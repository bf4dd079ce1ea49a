package store

import (
	"context"
	"database/sql/driver"
	"errors"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
)

// Unavailable says whether err means the database cannot be reached or cannot take the work now (server
// down or restarting, connection refused or lost, too many connections, SQLite busy past its timeout), as
// opposed to a refusal of this very change: callers answer "try again later" (503), not "refused".
func Unavailable(err error) bool {
	if err == nil {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		// Class 08: connection exception; 57P01-57P03: shutting down or starting; 53300: too many connections.
		return strings.HasPrefix(pgErr.Code, "08") || pgErr.Code == "57P01" || pgErr.Code == "57P02" ||
			pgErr.Code == "57P03" || pgErr.Code == "53300"
	}
	var connErr *pgconn.ConnectError
	var netErr net.Error
	switch {
	case errors.As(err, &connErr), errors.As(err, &netErr), errors.Is(err, driver.ErrBadConn),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, context.DeadlineExceeded), pgconn.Timeout(err):
		return true
	}
	msg := err.Error()
	// pgx reports a connection dropped mid-query this way; SQLite reports its lock timeout as "database is
	// locked" (SQLITE_BUSY) and a vanished file as "unable to open"; database/sql says "database is closed" once
	// the pool was shut.
	return strings.Contains(msg, "conn closed") || strings.Contains(msg, "unexpected EOF") ||
		strings.Contains(msg, "database is locked") || strings.Contains(msg, "unable to open database") ||
		strings.Contains(msg, "database is closed")
}
