package audit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"gorm.io/gorm"

	"gatewayd/gateway/store"
)

// syslogPositionName is the settings row holding the last row sent to syslog: the forwarder resumes there
// after a restart, and several instances share it (one sends at a time, under a lock).
const syslogPositionName = "syslog_forwarded_seq"

// syslogBatch bounds the rows one pass sends.
const syslogBatch = 500

// Forwarder sends each new audit row to the local syslog as an RFC 5424 message carrying ids and the action
// only: sequence number, actor, subject and hash, never details. It reads linked rows (a row whose
// transaction rolled back never existed, so it is never sent; a committed row is sent once linked, which is
// right after its commit) and delivers at least once.
type Forwarder struct {
	DB       *gorm.DB
	Socket   string // a unix datagram socket, /dev/log usually
	Hostname string
	PID      int
}

// NewForwarder returns a forwarder to the unix datagram socket at path.
func NewForwarder(db *gorm.DB, path string) *Forwarder {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "-"
	}
	return &Forwarder{DB: db, Socket: path, Hostname: host, PID: os.Getpid()}
}

// Run forwards every interval until ctx is done. Errors are returned to report, not to stop: report logs them.
func (f *Forwarder) Run(ctx context.Context, interval time.Duration, report func(error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := f.Once(ctx); err != nil && ctx.Err() == nil {
			report(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Once sends the rows appended since the last pass and returns how many it sent. On the first pass ever it
// starts at the chain's head: the forwarder sends new rows, and audit export is for the history.
func (f *Forwarder) Once(ctx context.Context) (int, error) {
	// Most passes find nothing new: tell that with two reads, outside a transaction (on SQLite a transaction
	// takes the single write lock).
	var quick struct {
		Head int64
		Pos  *string
	}
	if err := f.DB.WithContext(ctx).Raw("SELECT (SELECT seq FROM audit_head WHERE id = 1) AS head, (SELECT value FROM settings WHERE name = ?) AS pos",
		syslogPositionName).Scan(&quick).Error; err != nil {
		return 0, fmt.Errorf("syslog position: %w", err)
	}
	if quick.Pos != nil && *quick.Pos == strconv.FormatInt(quick.Head, 10) {
		return 0, nil
	}
	// Send only links that are on disk: a copy outside must never name a link the database could lose.
	head, err := DurableHead(ctx, f.DB)
	if err != nil {
		return 0, fmt.Errorf("syslog: %w", err)
	}
	sent := 0
	var sendErr error
	err = store.Tx(ctx, f.DB, func(tx *gorm.DB) error {
		sent, sendErr = 0, nil
		if store.DialectOf(tx) == store.Postgres {
			var got bool
			if err := tx.Raw("SELECT pg_try_advisory_xact_lock(727004)").Scan(&got).Error; err != nil || !got {
				return err // another instance is sending
			}
		}
		var pos []string
		if err := tx.Raw("SELECT value FROM settings WHERE name = ?", syslogPositionName).Scan(&pos).Error; err != nil {
			return err
		}
		if len(pos) == 0 {
			var head int64
			if err := tx.Raw("SELECT seq FROM audit_head WHERE id = 1").Scan(&head).Error; err != nil {
				return err
			}
			return tx.Exec("INSERT INTO settings (name, value, updated_at) VALUES (?, ?, ?)", syslogPositionName,
				strconv.FormatInt(head, 10), time.Now().UTC()).Error
		}
		after, err := strconv.ParseInt(pos[0], 10, 64)
		if err != nil {
			return fmt.Errorf("syslog position %q: %w", pos[0], err)
		}
		var rows []Row
		if err := tx.Where("seq > ? AND seq <= ?", after, head.Seq).Order("seq").Limit(syslogBatch).Find(&rows).Error; err != nil {
			return err
		}
		if len(rows) == 0 {
			return nil
		}
		conn, err := net.Dial("unixgram", f.Socket)
		if err != nil {
			return fmt.Errorf("syslog %s: %w", f.Socket, err)
		}
		defer conn.Close()
		for _, r := range rows {
			if _, sendErr = conn.Write([]byte(f.message(r))); sendErr != nil {
				sendErr = fmt.Errorf("syslog %s: %w", f.Socket, sendErr)
				break
			}
			after = r.Seq
			sent++
		}
		// What was sent stays sent, even when a later write failed.
		if sent > 0 {
			if err := tx.Exec("UPDATE settings SET value = ?, updated_at = ? WHERE name = ?", strconv.FormatInt(after, 10),
				time.Now().UTC(), syslogPositionName).Error; err != nil {
				return err
			}
		}
		return nil
	})
	return sent, errors.Join(err, sendErr)
}

// syslogPRI is facility 13 (log audit) and severity 6 (informational): 13*8 + 6.
const syslogPRI = 110

// message formats a row as RFC 5424: <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] MSG. MSGID is the
// action; the structured data (private id gatewayd@32473, the enterprise number RFC 5612 reserves for
// examples) carries the ids. Details never leave: they are the database's to keep.
func (f *Forwarder) message(r Row) string {
	return SyslogMessage(syslogPRI, r.At, f.Hostname, f.PID, r.Action, "gatewayd@32473", [][2]string{
		{"seq", strconv.FormatInt(r.Seq, 10)}, {"actor", r.Actor}, {"subject", r.Subject}, {"hash", r.Hash}}, r.Action)
}

// SyslogMessage formats one RFC 5424 message: <PRI>1 TIMESTAMP HOSTNAME APP-NAME(gatewayd) PROCID MSGID
// [SDID name="value" ...] MSG, header fields kept printable, parameter values escaped. The alerts (package
// gateway/alerts) use it too, so that the gateway speaks one syslog.
func SyslogMessage(pri int, at time.Time, hostname string, pid int, msgID, sdID string, params [][2]string, msg string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "<%d>1 %s %s gatewayd %d %s [%s", pri, at.UTC().Format(TimeLayout), printable(hostname, 255), pid,
		printable(msgID, 32), sdID)
	for _, p := range params {
		fmt.Fprintf(&b, ` %s="%s"`, p[0], sdEscape(p[1]))
	}
	b.WriteString("] ")
	b.WriteString(sdEscape(msg))
	return b.String()
}

// printable keeps a header field to printable US-ASCII without spaces, as RFC 5424 asks ("-" when empty).
func printable(s string, max int) string {
	b := []byte{}
	for i := 0; i < len(s) && len(b) < max; i++ {
		if s[i] > 32 && s[i] < 127 {
			b = append(b, s[i])
		}
	}
	if len(b) == 0 {
		return "-"
	}
	return string(b)
}

// sdEscape escapes a structured-data parameter value: '"', '\' and ']' take a backslash.
func sdEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, `]`, `\]`).Replace(s)
}
