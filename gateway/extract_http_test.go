package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"html"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"gorm.io/gorm"

	"gatewayd/approvals"
	"gatewayd/gateway/audit"
	"gatewayd/gateway/records"
	"gatewayd/gateway/records/fhircheck"
	"gatewayd/gateway/store"
	"gatewayd/gateway/store/storetest"
	"gatewayd/templates"
)

// DigestOfBundle recomputes, from a downloaded extract alone, the manifest digest the officer signed: each
// entry's reference (id/version, in the urn:gatewayd:manifest-entry extension) and SHA-256 of its resource's
// bytes as they appear in the file (the content hash). The Patient carries no reference: it is not an entry.
func digestOfBundle(t testing.TB, body []byte) (digest string, entries int) {
	t.Helper()
	var b struct {
		ResourceType string            `json:"resourceType"`
		Type         string            `json:"type"`
		Entry        []fhircheck.Entry `json:"entry"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		t.Fatalf("the extract is not JSON: %v", err)
	}
	if b.ResourceType != "Bundle" || b.Type != "collection" || len(b.Entry) < 2 {
		t.Fatalf("not a FHIR collection Bundle with entries: %s %s %d", b.ResourceType, b.Type, len(b.Entry))
	}
	var es []approvals.ManifestEntry
	for i, e := range b.Entry {
		var head struct {
			ResourceType string `json:"resourceType"`
			ID           string `json:"id"`
		}
		if err := json.Unmarshal(e.Resource, &head); err != nil || head.ResourceType == "" || head.ID == "" {
			t.Fatalf("entry %d: resource without resourceType or id", i)
		}
		if len(e.Extension) == 0 {
			if head.ResourceType != "Patient" {
				t.Fatalf("entry %d (%s) carries no manifest reference", i, head.ResourceType)
			}
			continue
		}
		if e.Extension[0].URL != records.EntryExtension {
			t.Fatalf("entry %d: extension %q", i, e.Extension[0].URL)
		}
		id, v, ok := strings.Cut(e.Extension[0].ValueString, "/")
		version, err := strconv.Atoi(v)
		if !ok || err != nil {
			t.Fatalf("entry %d: reference %q", i, e.Extension[0].ValueString)
		}
		hash, err := e.ContentHash()
		if err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		es = append(es, approvals.ManifestEntry{ID: id, Version: version, ContentHash: hash})
	}
	return approvals.ManifestDigest(es), len(es)
}

// signedDigest is the manifest digest of the receipt of the decision that released an extract.
func (f *xfix) signedDigest(requestID string) string {
	f.t.Helper()
	rc, err := f.domain.Receipt(context.Background(), requestID)
	if err != nil {
		f.t.Fatal(err)
	}
	d, err := approvals.VerifyReceipt(rc)
	if err != nil {
		f.t.Fatal(err)
	}
	return d.ManifestDigest
}

type auditRow struct {
	Action  string
	Subject string
	Details string
}

func (f *xfix) audits(extractID, action string) []auditRow {
	f.t.Helper()
	var rows []auditRow
	// In chain order: the rows linked first (on PostgreSQL the chainer links them after their commits).
	if _, err := audit.Link(context.Background(), f.db); err != nil {
		f.t.Fatal(err)
	}
	if err := f.db.Raw("SELECT action, subject, details FROM audit_events WHERE subject = ? AND action = ? ORDER BY seq",
		"extract:"+extractID, action).Scan(&rows).Error; err != nil {
		f.t.Fatal(err)
	}
	return rows
}

var fileName = regexp.MustCompile(`^attachment; filename="extract-[0-9a-f]{32}-[0-9a-f]{32}\.(json|html)"$`)

func TestRetrieveExtractOnce(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		f := newXFix(t, db)
		for _, tc := range []struct {
			name, user, format, ctype string
			to                        approvals.RetrieverKind
		}{
			{"requester on intake, FHIR", "requester", formatFHIR, "application/fhir+json; charset=utf-8", approvals.ToRequester},
			{"staff on console, FHIR", "staff", formatFHIR, "application/fhir+json; charset=utf-8", approvals.ToStaff},
			{"staff on console, HTML", "staff", formatHTML, "text/html; charset=utf-8", approvals.ToStaff},
		} {
			t.Run(tc.name, func(t *testing.T) {
				req, xid := f.approve(tc.to, time.Hour)
				w := f.retrieve(tc.user, xid, tc.format)
				if w.Code != http.StatusOK {
					t.Fatalf("retrieve: %d %s", w.Code, w.Body.String())
				}
				hd := w.Header()
				if hd.Get("Cache-Control") != "no-store" || hd.Get("Content-Type") != tc.ctype {
					t.Fatalf("headers: %v", hd)
				}
				cd := hd.Get("Content-Disposition")
				if !fileName.MatchString(cd) || !strings.Contains(cd, req.ID) || strings.Contains(cd, sampleFamily) {
					t.Fatalf("Content-Disposition %q", cd)
				}
				body := w.Body.Bytes()
				if tc.format == formatFHIR {
					digest, n := digestOfBundle(t, body)
					if want := f.signedDigest(req.ID); digest != want {
						t.Fatalf("digest recomputed from the download %s, receipt's %s", digest, want)
					}
					x, err := f.domain.ExtractOf(context.Background(), req.ID)
					if err != nil || n != len(x.Entries) {
						t.Fatalf("%d entries downloaded, manifest has %d (%v)", n, len(x.Entries), err)
					}
				}
				// The Bundle carries the purpose's code; the printable page says it in the reader's words.
				purpose := "care_continuity"
				if tc.format != formatFHIR {
					purpose = "Continuité des soins"
				}
				for _, mark := range []string{req.ID, "Test requester", purpose} {
					if !bytes.Contains(body, []byte(mark)) {
						t.Fatalf("watermark lacks %q", mark)
					}
				}
				if got := f.audits(xid, "extract.retrieved"); len(got) != 1 {
					t.Fatalf("%d extract.retrieved rows", len(got))
				}
				delivered := f.audits(xid, "extract.delivered")
				sum := sha256.Sum256(body)
				if len(delivered) != 1 || !strings.Contains(delivered[0].Details, hex.EncodeToString(sum[:])) ||
					!strings.Contains(delivered[0].Details, `"bytes":`+strconv.Itoa(len(body))) ||
					!strings.Contains(delivered[0].Details, `"complete":true`) {
					t.Fatalf("extract.delivered rows %+v, want the SHA-256 and size of the %d bytes sent", delivered, len(body))
				}
				// A second try is refused, audited, and changes nothing.
				before := f.extractState(xid)
				w = f.retrieve(tc.user, xid, tc.format)
				if w.Code != http.StatusGone || !strings.Contains(w.Body.String(), "data-") && !strings.Contains(w.Body.String(), "<") {
					t.Fatalf("second retrieval: %d", w.Code)
				}
				if f.extractState(xid) != before || len(f.audits(xid, "extract.refused")) != 1 {
					t.Fatal("the second retrieval changed the extract or was not audited")
				}
			})
		}
	})
}

func TestRetrieveRefusals(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		f := newXFix(t, db)
		ctx := context.Background()
		_, retrieved := f.approve(approvals.ToRequester, time.Hour)
		if w := f.retrieve("requester", retrieved, formatFHIR); w.Code != http.StatusOK {
			t.Fatalf("first retrieval: %d", w.Code)
		}
		_, revoked := f.approve(approvals.ToRequester, time.Hour)
		if err := f.domain.RevokeExtract(ctx, f.users["officer"].id, revoked); err != nil {
			t.Fatal(err)
		}
		_, expiring := f.approve(approvals.ToRequester, 2*time.Minute)
		_, forRequester := f.approve(approvals.ToRequester, time.Hour)
		_, forStaff := f.approve(approvals.ToStaff, time.Hour)
		f.clock.Set(f.clock.Now().Add(3 * time.Minute)) // expiring has expired; the others have not
		for _, tc := range []struct {
			name, user, id, listener string
			status                   int
			reason                   string
		}{
			{"second retrieval", "requester", retrieved, Intake, http.StatusGone, "already_retrieved"},
			{"after expiry", "requester", expiring, Intake, http.StatusGone, "expired"},
			{"after revocation", "requester", revoked, Intake, http.StatusGone, "revoked"},
			{"another requester", "requester2", forRequester, Intake, http.StatusNotFound, "not_retriever"},
			{"another requester, retrieved extract", "requester2", retrieved, Intake, http.StatusNotFound, "not_retriever"},
			{"unknown id", "requester", "0123456789abcdef0123456789abcdef", Intake, http.StatusNotFound, "not_found"},
			{"staff's extract on intake", "requester", forStaff, Intake, http.StatusNotFound, "not_retriever"},
			{"requester's extract on console", "staff", forRequester, Console, http.StatusNotFound, "not_retriever"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				before := f.extractState(tc.id)
				refusals := f.count("SELECT COUNT(*) FROM audit_events WHERE action = 'extract.refused' AND subject = ? AND details LIKE ?",
					"extract:"+tc.id, "%"+tc.reason+"%")
				all := f.count("SELECT COUNT(*) FROM audit_events")
				w := f.retrieve(tc.user, tc.id, formatFHIR, tc.listener)
				if w.Code != tc.status {
					t.Fatalf("status %d, want %d", w.Code, tc.status)
				}
				if tc.status == http.StatusNotFound && (!strings.Contains(w.Body.String(), html.EscapeString(templates.T("fr", "error.404"))) ||
					strings.Contains(w.Body.String(), html.EscapeString(templates.T("fr", "extracts.refused.title")))) {
					t.Fatalf("the 404 is not the generic page: %s", w.Body.String())
				}
				if f.extractState(tc.id) != before {
					t.Fatal("a refusal changed the extract")
				}
				if f.count("SELECT COUNT(*) FROM audit_events") != all+1 ||
					f.count("SELECT COUNT(*) FROM audit_events WHERE action = 'extract.refused' AND subject = ? AND details LIKE ?",
						"extract:"+tc.id, "%"+tc.reason+"%") != refusals+1 {
					t.Fatalf("the refusal was not audited as %s", tc.reason)
				}
			})
		}
		// A bad format is refused before any claim: the extract stays ready and nothing is audited.
		all := f.count("SELECT COUNT(*) FROM audit_events")
		if w := f.retrieve("requester", forRequester, "pdf"); w.Code != http.StatusBadRequest {
			t.Fatalf("bad format: %d", w.Code)
		}
		if f.count("SELECT COUNT(*) FROM audit_events") != all || f.count("SELECT COUNT(*) FROM extracts WHERE id = ? AND retrieved_at IS NULL", forRequester) != 1 {
			t.Fatal("a bad format changed something")
		}
	})
}

// TestRetrieveRaceHTTP: 50 concurrent retrievals of one extract over HTTP give one download, one
// extract.retrieved row and one extract.delivered row.
func TestRetrieveRaceHTTP(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		f := newXFix(t, db)
		_, xid := f.approve(approvals.ToRequester, time.Hour)
		const n = 50
		var (
			wg    sync.WaitGroup
			start = make(chan struct{})
			mu    sync.Mutex
			codes = map[int]int{}
		)
		for range n {
			wg.Go(func() {
				<-start
				w := f.retrieve("requester", xid, formatFHIR)
				mu.Lock()
				codes[w.Code]++
				mu.Unlock()
			})
		}
		close(start)
		wg.Wait()
		if codes[http.StatusOK] != 1 || codes[http.StatusGone] != n-1 {
			t.Fatalf("status counts %v, want one 200 and %d 410", codes, n-1)
		}
		if r, d := len(f.audits(xid, "extract.retrieved")), len(f.audits(xid, "extract.delivered")); r != 1 || d != 1 {
			t.Fatalf("%d extract.retrieved and %d extract.delivered rows, want 1 and 1", r, d)
		}
		if got := len(f.audits(xid, "extract.refused")); got != n-1 {
			t.Fatalf("%d refusals audited, want %d", got, n-1)
		}
	})
}

// TestExtractExpiry moves the clock: one second before expiry retrieval works; one second after it is
// refused, and the job marks the extract expired with its audit row.
func TestExtractExpiry(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		f := newXFix(t, db)
		start := f.clock.Now()
		_, early := f.approve(approvals.ToRequester, 2*time.Minute)
		_, late := f.approve(approvals.ToRequester, 2*time.Minute)
		var exp time.Time
		if err := db.Raw("SELECT expires_at FROM extracts WHERE id = ?", early).Row().Scan(&exp); err != nil {
			t.Fatal(err)
		}
		if exp.Sub(start) > 2*time.Minute || exp.Sub(start) < time.Minute {
			t.Fatalf("expiry %s for a start at %s", exp, start)
		}
		f.clock.Set(exp.Add(-time.Second))
		if w := f.retrieve("requester", early, formatFHIR); w.Code != http.StatusOK {
			t.Fatalf("one second before expiry: %d", w.Code)
		}
		f.clock.Set(exp.Add(time.Second))
		if w := f.retrieve("requester", late, formatFHIR); w.Code != http.StatusGone {
			t.Fatalf("one second after expiry: %d", w.Code)
		}
		n, err := f.srv.h.approvals.RunExpireExtracts(context.Background(), f.clock.Now())
		if err != nil || n != 1 {
			t.Fatalf("expiry job: %d, %v (want 1: the retrieved one is not expired)", n, err)
		}
		if f.count("SELECT COUNT(*) FROM extracts WHERE id = ? AND expired_at IS NOT NULL", late) != 1 ||
			len(f.audits(late, "extract.expired")) != 1 || len(f.audits(early, "extract.expired")) != 0 {
			t.Fatal("the job did not mark and audit exactly the expired extract")
		}
		// The list shows the states.
		r := httptest.NewRequest(http.MethodGet, "/extracts", nil)
		r.Header.Set("Cookie", f.users["requester"].cookie)
		r.Header.Set("Accept", "application/json")
		w := f.srv.call(Intake, r)
		var list extractList
		if err := json.Unmarshal(w.Body.Bytes(), &list); err != nil || len(list.Items) != 2 {
			t.Fatalf("list: %d %s", w.Code, w.Body.String())
		}
		states := map[string]string{}
		for _, it := range list.Items {
			states[it.ID] = it.State
		}
		if states[early] != "retrieved" || states[late] != "expired" {
			t.Fatalf("states %v", states)
		}
	})
}

// failingWriter accepts limit bytes, then fails as a connection whose client went away.
type failingWriter struct {
	*httptest.ResponseRecorder
	limit int
}

var errGone = errors.New("client went away")

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.limit <= 0 {
		return 0, errGone
	}
	if len(p) > w.limit {
		n, _ := w.ResponseRecorder.Write(p[:w.limit])
		w.limit = 0
		return n, errGone
	}
	w.limit -= len(p)
	return w.ResponseRecorder.Write(p)
}

// TestBrokenDelivery: the client goes away mid-stream. The extract stays retrieved, the audit says the
// delivery was incomplete (with the bytes that did go), and an officer re-issues it with a new signed
// decision, once; the requester retrieves the new extract.
func TestBrokenDelivery(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		f := newXFix(t, db)
		ctx := context.Background()
		req, xid := f.approve(approvals.ToRequester, time.Hour)
		u := f.users["requester"]
		r := httptest.NewRequest(http.MethodPost, retrievePath(Intake, xid, true)+"?format=fhir", nil)
		r.Header.Set("Origin", f.srv.origin(Intake))
		r.Header.Set("Cookie", u.cookie)
		r.Header.Set(csrfHeader, u.csrf)
		r.RemoteAddr = "127.0.0.1:40000"
		fw := &failingWriter{ResponseRecorder: httptest.NewRecorder(), limit: 10 << 10}
		f.srv.intake.ServeHTTP(fw, r)
		sent := fw.Body.Len()
		delivered := f.audits(xid, "extract.delivered")
		if len(delivered) != 1 || !strings.Contains(delivered[0].Details, `"complete":false`) ||
			!strings.Contains(delivered[0].Details, `"bytes":`+strconv.Itoa(sent)) {
			t.Fatalf("delivery audit %+v after %d bytes", delivered, sent)
		}
		if w := f.retrieve("requester", xid, formatFHIR); w.Code != http.StatusGone {
			t.Fatalf("one time is one time: %d", w.Code)
		}
		officer := f.users["officer"].id
		p, err := f.domain.PrepareReissue(ctx, officer, xid, approvals.ReissueInput{WordingVersion: reissueWording})
		if err != nil {
			t.Fatal(err)
		}
		if p.Decision.ManifestDigest != f.signedDigest(req.ID) {
			t.Fatal("the re-issue releases another manifest")
		}
		out, err := f.domain.CompleteDecision(ctx, officer, p.ID, f.signer.Sign(officer, p.Options))
		if err != nil || out.ExtractID == "" || out.ExtractID == xid {
			t.Fatalf("re-issue: %+v %v", out, err)
		}
		if _, err := f.domain.PrepareReissue(ctx, officer, xid, approvals.ReissueInput{WordingVersion: reissueWording}); !errors.Is(err, approvals.ErrNotReissuable) {
			t.Fatalf("a second re-issue: %v", err)
		}
		w := f.retrieve("requester", out.ExtractID, formatFHIR)
		if w.Code != http.StatusOK {
			t.Fatalf("retrieve the re-issued extract: %d", w.Code)
		}
		rc, err := f.domain.Receipt(ctx, out.DecisionID)
		if err != nil {
			t.Fatal(err)
		}
		d, err := approvals.VerifyReceipt(rc)
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := digestOfBundle(t, w.Body.Bytes()); got != d.ManifestDigest {
			t.Fatal("the re-issued download does not match its receipt")
		}
		// A complete delivery cannot be re-issued.
		if _, err := f.domain.PrepareReissue(ctx, officer, out.ExtractID, approvals.ReissueInput{WordingVersion: reissueWording}); !errors.Is(err, approvals.ErrNotReissuable) {
			t.Fatalf("re-issue of a delivered extract: %v", err)
		}
	})
}

// TestDeliveryFailsBeforeAnyByte: stored entries no longer match the signed manifest. The claim stands (one
// time is one time), the client gets the generic error page rather than an empty attachment, and the audit
// says the delivery was incomplete with 0 bytes.
func TestDeliveryFailsBeforeAnyByte(t *testing.T) {
	db := storetest.NewSQLite(t)
	f := newXFix(t, db)
	_, xid := f.approve(approvals.ToRequester, time.Hour)
	if err := db.Exec("UPDATE record_entries SET content_hash = 'changed' WHERE id IN (SELECT id FROM record_entries WHERE category = 'results' LIMIT 1)").Error; err != nil {
		t.Fatal(err)
	}
	w := f.retrieve("requester", xid, formatFHIR)
	if w.Code != http.StatusInternalServerError || w.Header().Get("Content-Disposition") != "" {
		t.Fatalf("status %d, Content-Disposition %q", w.Code, w.Header().Get("Content-Disposition"))
	}
	delivered := f.audits(xid, "extract.delivered")
	if len(delivered) != 1 || !strings.Contains(delivered[0].Details, `"complete":false`) || !strings.Contains(delivered[0].Details, `"bytes":0`) {
		t.Fatalf("delivery audit %+v", delivered)
	}
	if f.count("SELECT COUNT(*) FROM extracts WHERE id = ? AND retrieved_at IS NOT NULL", xid) != 1 {
		t.Fatal("the claim did not stand")
	}
}

// TestDownloadedBundleIsSelfContained downloads FHIR extracts of a patient with encounters and
// practitioners, over HTTP as a receiving system gets them: every reference left in the Bundle resolves to
// one of its entries (the others were removed with a display), and the Bundle is valid FHIR R4.
func TestDownloadedBundleIsSelfContained(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		f := newXFix(t, db)
		for _, tc := range []struct {
			name string
			cats []approvals.Category
		}{
			{"without encounters", []approvals.Category{approvals.Results, approvals.Immunizations, approvals.Treatments}},
			{"with encounters", []approvals.Category{approvals.Encounters, approvals.Conditions, approvals.Procedures}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, xid := f.approve(approvals.ToRequester, time.Hour, tc.cats...)
				w := f.retrieve("requester", xid, formatFHIR)
				if w.Code != http.StatusOK {
					t.Fatalf("retrieve: %d %s", w.Code, w.Body.String())
				}
				body := w.Body.Bytes()
				unresolved, resolved, err := fhircheck.Unresolved(body)
				if err != nil {
					t.Fatal(err)
				}
				for i, refs := range unresolved {
					t.Errorf("entry %d: references %q resolve to nothing in the downloaded Bundle", i, refs)
				}
				if resolved == 0 {
					t.Fatal("no reference resolves: the patient's references were all dropped")
				}
				if !bytes.Contains(body, []byte(records.NotIncluded)) {
					t.Fatal("no reference was removed: the test data should refer outside the released scope")
				}
				if err := fhircheck.Validate(body); err != nil {
					t.Fatalf("the downloaded Bundle is not valid FHIR R4: %v", err)
				}
			})
		}
	})
}

// TestRetrievalsWaitForASlot: while every retrieval slot is streaming, another retrieval waits, then gets 503
// with Retry-After and nothing consumed; once a slot is free the same extract is retrieved once.
func TestRetrievalsWaitForASlot(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		f := newXFix(t, db)
		_, id := f.approve(approvals.ToRequester, time.Hour)
		h := f.srv.h
		if cap(h.retrievals) < 1 || cap(h.retrievals) > 16 {
			t.Fatalf("%d retrieval slots", cap(h.retrievals))
		}
		// SQLite: twice its pool of 4, so that claims and delivery records queue for a shared commit.
		if store.DialectOf(db) != store.Postgres && cap(h.retrievals) != 8 {
			t.Fatalf("SQLite: %d retrieval slots, want 8", cap(h.retrievals))
		}
		h.retrievalWait = 50 * time.Millisecond
		for range cap(h.retrievals) {
			h.retrievals <- struct{}{}
		}
		before := f.extractState(id)
		w := f.retrieve("requester", id, formatFHIR)
		if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
			t.Fatalf("all slots busy: %d, Retry-After %q", w.Code, w.Header().Get("Retry-After"))
		}
		if after := f.extractState(id); after != before {
			t.Fatalf("a retrieval refused for want of a slot changed the extract:\n%s\n%s", before, after)
		}
		<-h.retrievals
		if w := f.retrieve("requester", id, formatFHIR); w.Code != http.StatusOK {
			t.Fatalf("a slot free: %d", w.Code)
		}
		if w := f.retrieve("requester", id, formatFHIR); w.Code != http.StatusGone {
			t.Fatalf("again: %d", w.Code)
		}
	})
}
