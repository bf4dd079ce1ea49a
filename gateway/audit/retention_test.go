package audit_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"gorm.io/gorm"

	"gatewayd/gateway/audit"
	"gatewayd/gateway/store/storetest"
)

// recordAt appends one event at a given time (the injected clock of these tests).
func recordAt(t *testing.T, db *gorm.DB, at time.Time, action, subject string) {
	t.Helper()
	if err := audit.Record(context.Background(), db, audit.Event{At: at, Actor: "user:u1", Action: action, Subject: subject,
		Details: map[string]any{"n": 1}}); err != nil {
		t.Fatal(err)
	}
}

// TestPurgeLeavesAVerifiableCheckpoint: rows older than the retention go (in several batches), the ones about
// requests and extracts are summarised first, verify proves the rest from the checkpoint, and a moved
// checkpoint or a row cut after it is caught.
func TestPurgeLeavesAVerifiableCheckpoint(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		t0 := time.Date(2025, 1, 10, 9, 0, 0, 0, time.UTC)
		const old = 2500 // more than one purge batch
		for i := range old {
			subject := "session:s"
			if i%2 == 0 {
				subject = "request:r1"
			}
			recordAt(t, db, t0.Add(time.Duration(i)*time.Second), "test.old", subject)
		}
		now := t0.AddDate(1, 1, 0) // thirteen months later
		recordAt(t, db, now.Add(-time.Hour), "extract.retrieved", "extract:x1")
		// A row dated back (a clock set wrong) after a recent one stays: only a prefix of the chain is cut.
		recordAt(t, db, t0, "test.backdated", "request:r1")
		linked(t, db)

		res, err := audit.Purge(ctx, db, now.AddDate(0, -12, 0), now, "system")
		if err != nil {
			t.Fatal(err)
		}
		if res.Purged != old || res.Summarised != old/2 || res.Checkpoint.Seq != old {
			t.Fatalf("purge %+v, want %d purged, %d summarised, checkpoint at %d", res, old, old/2, old)
		}
		linked(t, db) // audit.purged
		v, err := audit.Verify(ctx, db)
		if err != nil {
			t.Fatalf("verify after purge: %v", err)
		}
		if v.Rows != 3 || v.Checkpoint.Seq != old || v.Checkpoint.Purged != old {
			t.Fatalf("verify %+v: want 3 rows held (two and audit.purged) from the checkpoint", v)
		}
		trail, err := audit.Trail(ctx, db, []string{"request:r1", "extract:x1"})
		if err != nil {
			t.Fatal(err)
		}
		summaries := 0
		for _, e := range trail {
			if e.Summary {
				summaries++
				if e.Action != "test.old" || e.Actor != "user:u1" || e.At.Before(t0) {
					t.Fatalf("summary %+v", e)
				}
			}
		}
		if summaries != old/2 || len(trail) != old/2+2 {
			t.Fatalf("trail: %d events, %d summaries", len(trail), summaries)
		}
		// A second run finds nothing more and writes nothing.
		if again, err := audit.Purge(ctx, db, now.AddDate(0, -12, 0), now, "system"); err != nil || again.Purged != 0 {
			t.Fatalf("second purge %+v %v", again, err)
		}
		linked(t, db)
		if v2, _ := audit.Verify(ctx, db); v2.Rows != 3 {
			t.Fatalf("second purge appended rows: %d", v2.Rows)
		}

		// Moving the checkpoint on (to hide rows) no longer matches what audit.purged recorded.
		var hidden string
		db.Raw("SELECT hash FROM audit_events WHERE seq = ?", old+1).Scan(&hidden)
		db.Exec("DELETE FROM audit_events WHERE seq = ?", old+1)
		db.Exec("UPDATE audit_checkpoint SET seq = ?, hash = ? WHERE id = 1", old+1, hidden)
		if _, err := audit.Verify(ctx, db); err == nil {
			t.Fatal("a moved checkpoint verified")
		}
	})
}

// TestExportParsesBackToTheChain: the export from a time is JSON Lines whose rows hash to themselves and
// link to each other, from the first exported row to the chain's head.
func TestExportParsesBackToTheChain(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
		for i := range 30 {
			recordAt(t, db, t0.Add(time.Duration(i)*time.Hour), "test.event", "request:r<&>\"")
		}
		var buf bytes.Buffer
		n, err := audit.Export(ctx, db, t0.Add(10*time.Hour), &buf)
		if err != nil || n != 20 {
			t.Fatalf("export: %d rows, %v", n, err)
		}
		v, err := audit.Verify(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(&buf)
		var prev audit.Row
		lines := 0
		for sc.Scan() {
			var e audit.ExportRow
			dec := json.NewDecoder(strings.NewReader(sc.Text()))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&e); err != nil {
				t.Fatalf("line %d: %v", lines+1, err)
			}
			r, err := e.Row()
			if err != nil {
				t.Fatal(err)
			}
			if h, err := audit.RowHash(r); err != nil || h != r.Hash {
				t.Fatalf("row %d: hash %s, exported %s (%v)", r.Seq, h, r.Hash, err)
			}
			if lines == 0 && r.Seq != 11 {
				t.Fatalf("export starts at row %d, want 11", r.Seq)
			}
			if lines > 0 && (r.Seq != prev.Seq+1 || r.PrevHash != prev.Hash) {
				t.Fatalf("row %d does not follow row %d", r.Seq, prev.Seq)
			}
			prev = r
			lines++
		}
		if lines != 20 || prev.Hash != v.Head {
			t.Fatalf("%d lines, last hash %s, head %s", lines, prev.Hash, v.Head)
		}
	})
}

var rfc5424 = regexp.MustCompile(`^<110>1 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z \S+ gatewayd \d+ (\S{1,32}) \[gatewayd@32473 seq="(\d+)" actor="[^"]*" subject="(?:[^"\\\]]|\\["\\\]])*" hash="[0-9a-f]{64}"\] (\S+)$`)

// TestSyslogForwardsNewRows: a unix datagram socket stands for /dev/log; each new row arrives once as an
// RFC 5424 message with ids and the action, and no details.
func TestSyslogForwardsNewRows(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		sock := filepath.Join(t.TempDir(), "log")
		ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		recordAt(t, db, time.Now(), "test.before", "request:r0") // before forwarding: not sent
		linked(t, db)                                            // rows are forwarded once linked
		f := audit.NewForwarder(db, sock)
		if n, err := f.Once(ctx); err != nil || n != 0 {
			t.Fatalf("first pass sent %d (%v): it starts at the head", n, err)
		}
		recordAt(t, db, time.Now(), "extract.retrieved", `extract:x"1]`)
		recordAt(t, db, time.Now(), "request.filed", "request:r2")
		linked(t, db)
		if n, err := f.Once(ctx); err != nil || n != 2 {
			t.Fatalf("sent %d, %v", n, err)
		}
		if n, err := f.Once(ctx); err != nil || n != 0 {
			t.Fatalf("sent again: %d, %v", n, err)
		}
		buf := make([]byte, 2048)
		for i, want := range []struct{ action, seq string }{{"extract.retrieved", "2"}, {"request.filed", "3"}} {
			ln.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err := ln.Read(buf)
			if err != nil {
				t.Fatal(err)
			}
			msg := string(buf[:n])
			m := rfc5424.FindStringSubmatch(msg)
			if m == nil || m[1] != want.action || m[2] != want.seq || m[3] != want.action {
				t.Fatalf("message %d %q", i, msg)
			}
			if strings.Contains(msg, `"n"`) || strings.Contains(msg, "details") {
				t.Fatalf("details left: %q", msg)
			}
		}
	})
}
