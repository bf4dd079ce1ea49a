package gateway

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"gatewayd/approvals"
	"gatewayd/gateway/audit"
	"gatewayd/gateway/identity/identitytest"
	"gatewayd/gateway/store/storetest"
)

// statementCounter is a gorm logger that counts the SQL statements run (every statement gorm executes is
// traced once; BEGIN and COMMIT are not statements gorm traces, so transactions are not counted).
type statementCounter struct {
	logger.Interface
	n atomic.Int64
}

func (c *statementCounter) Trace(ctx context.Context, begin time.Time, fc func() (string, int64), err error) {
	if !audit.ByChainer(ctx) { // the audit chain's linker runs beside the callers, not for one
		c.n.Add(1)
	}
	c.Interface.Trace(ctx, begin, fc, err)
}

// count runs fn and returns how many statements it ran.
func (c *statementCounter) count(fn func()) int64 {
	before := c.n.Load()
	fn()
	return c.n.Load() - before
}

// The statements each hot path runs, so that round trips cannot creep back: filing, prepare + sign of an
// approval, a passkey sign-in, and one retrieval over HTTP (session check included). A change that needs one
// more statement changes the number here, in the same commit, with the reason.
func TestStatementCounts(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		// Filing: the requester's account; the request inserted on condition that the daily limit is not reached
		// (the count and the insert in one statement, issue 15); audit 3; the alert (issue 10; its queue length
		// is counted when it is sent, not by every filing). On PostgreSQL the filing is one statement that
		// commits on its own (issue 15, fileInOneStatement: data-modifying WITHs, which SQLite lacks): the
		// requester's filing window moved on condition of the limit (a row lock the upsert's condition waits on,
		// so that two filings at once cannot both pass the limit, where an advisory lock statement came first),
		// the request, the alert and the audit row; nor BEGIN and COMMIT, which this count leaves out.
		// Approval: the audit chain's head read at preparation (the signed anchor) and the requester's account
		// read to compare persons (one person, one vote): two statements that buy the issue-11 guarantees; the
		// patient's restrictions read at preparation and again inside the completing transaction (issue 10).
		// Filing over HTTP: the session check (one statement), then the filing without its read of the
		// requester's account, which the session check has just read (usersAdapter): one fewer than "file".
		// Sign-in (issue 15): begin 0 (the ceremony's state is sealed in its id, identity's signin_ceremony.go:
		// nothing stored, where its INSERT was a round trip; used ones are swept once a minute), finish 7:
		// whether the ceremony was used, the user and the passkey the assertion names, read in one statement
		// that writes nothing; then one transaction: the ceremony recorded as used (its INSERT, on condition
		// that it was not, is the single use), the sign count written back on condition of the count read, no
		// second read, the session, audit 3. On
		// PostgreSQL the whole write is one statement of data-modifying WITHs (which SQLite lacks), committed on
		// its own without waiting for the WAL flush (identity's package doc): its four writes (the ceremony, the
		// sign count, the session, the audit row's insert) in one statement, 3 fewer, besides audit's 2 (one
		// round trip where consuming the ceremony first, BEGIN, the sign count with the session, the audit row
		// and COMMIT were five).
		// Retrieval: session 1 (session, user and live passkey in one statement), claim 5 (the extract and what
		// rendering needs of its request in one read; the UPDATE; audit 3; the retriever's account is the one
		// the session check read: one more than an UPDATE … RETURNING every column and three subqueries, which
		// SQLite's driver compiled at each retrieval and which cost more than the read and a plain UPDATE:
		// approvals.claimAfterRead), rendering 1 (the patient, found by its identifier's blind index and read in
		// the same statement: records.ManifestOf; the requester's account is not read again, the session check
		// read it) + 1 per 128 entries (the entries by primary key: the Bundle's reference targets come
		// from the signed entry ids, no longer from a first pass over the entries), delivery 4 (UPDATE; audit 3).
		// A refused retrieval: session 1, the read that refuses, audit 3.
		want := map[string]int64{"file": 6, "file-over-http": 6, "approve": 24, "sign-in": 7, "retrieve": 12,
			"retrieve-again-within-a-minute": 5}
		// On PostgreSQL an audit row is one statement, its insert: the chainer links it after the commit,
		// beside the callers, which do not wait for it (gateway/audit's package doc; its statements are not
		// counted): two fewer per row than SQLite's head read, insert and head update. Approval (3 rows): 6
		// fewer; it also takes the patient's lock (one statement), so that a block put in force at the same
		// moment is seen, and waits for a link before reading its anchor (audit.LinkedHead; the chainer's
		// statements). Filing and sign-in: see above.
		if db.Dialector.Name() == "postgres" {
			want["file"] -= 4 // the limit, the request, the alert and the audit row in one statement: 4 fewer
			want["file-over-http"] -= 4
			want["approve"] -= 3*2 - 1
			want["sign-in"] -= 2 + 3    // audit: 2 fewer; the write as one statement: 3 fewer
			want["retrieve"] -= 2*2 + 1 // audit: 2 fewer a row; the delivery's update and audit row in one statement
			// The claim's update and audit row in one statement too: 1 fewer.
			want["retrieve"]--
			want["retrieve-again-within-a-minute"] -= 2
		}
		f := newXFix(t, db)
		// The chainer may still be linking the fixture's rows (reading db's settings): let it finish first.
		if _, err := audit.Link(context.Background(), db); err != nil {
			t.Fatal(err)
		}
		c := &statementCounter{Interface: db.Logger}
		db.Logger = c
		ctx := context.Background()
		got := map[string]int64{}
		var req approvals.Request
		got["file"] = c.count(func() {
			var err error
			req, err = f.domain.FileRequest(ctx, approvals.Filing{RequesterID: f.users["requester"].id, Patient: samplePatient,
				Categories: []approvals.Category{approvals.Results}, Purpose: approvals.PurposeCareContinuity,
				Justification: "Follow-up after transfer to our ward.", Urgency: approvals.Routine, Delivery: approvals.ToRequester})
			if err != nil {
				t.Fatal(err)
			}
		})
		got["file-over-http"] = c.count(func() {
			if w := f.post("requester", "/api/v1/requests", []byte(asJSON(validFiling(samplePatient)))); w.Code != http.StatusCreated {
				t.Fatalf("file over HTTP: %d %s", w.Code, w.Body)
			}
		})
		officer := f.users["officer"].id
		var xid string
		got["approve"] = c.count(func() {
			p, err := f.domain.PrepareDecision(ctx, officer, req.ID, approvals.DecisionInput{Verdict: approvals.Approve,
				Retriever: approvals.ToRequester, ExpiresIn: time.Hour, WordingVersion: "review-v1"})
			if err != nil {
				t.Fatal(err)
			}
			out, err := f.domain.CompleteDecision(ctx, officer, p.ID, f.signer.Sign(officer, p.Options))
			if err != nil {
				t.Fatal(err)
			}
			xid = out.ExtractID
		})
		got["sign-in"] = c.count(func() {
			if _, err := identitytest.SignIn(t, f.srv.Identity(), Intake, f.users["requester"].key); err != nil {
				t.Fatal(err)
			}
		})
		got["retrieve"] = c.count(func() {
			if w := f.retrieve("requester", xid, formatFHIR); w.Code != http.StatusOK {
				t.Fatalf("retrieve: %d", w.Code)
			}
		})
		// The second request of a session within a minute does not write its last-seen time again.
		got["retrieve-again-within-a-minute"] = c.count(func() {
			if w := f.retrieve("requester", xid, formatFHIR); w.Code == http.StatusOK {
				t.Fatal("retrieved twice")
			}
		})
		for k, n := range got {
			if n != want[k] {
				t.Errorf("%s: %d statements, want %d", k, n, want[k])
			}
		}
	})
}
