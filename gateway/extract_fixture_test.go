package gateway

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"gorm.io/gorm"

	"gatewayd/approvals"
	"gatewayd/approvals/approvalstest"
	"gatewayd/gateway/identity"
	"gatewayd/gateway/identity/identitytest"
	"gatewayd/gateway/keys"
	"gatewayd/gateway/records"
)

// testClock is a clock the tests move by hand.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// The sample patient of testdata (a synthetic Synthea patient).
var (
	samplePatient = approvals.Identifier{System: "https://github.com/synthetichealth/synthea",
		Value: "fc712d1f-5a2e-4407-9c55-a2a2bad623c2"}
	sampleFamily = "Atencio"
)

// xfix is a gateway serving real records and identity, with extracts approved through the approvals domain
// and a software signer (the signing pages belong to the review flow, tested on their own).
type xfix struct {
	t       testing.TB
	db      *gorm.DB
	srv     *Server
	clock   *testClock
	dataDir string
	// domain is an approvals service over the same database whose officer signs in software.
	domain *approvals.Service
	signer *approvalstest.Signer
	users  map[string]testUser
	// logs holds everything the server logged.
	logs *syncBuffer
	// people counts the users addUser registered (each gets a professional id of their own).
	people int
}

// syncBuffer is a bytes.Buffer safe for concurrent writers (the server logs from many requests at once).
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.b.Bytes())
}

type testUser struct {
	id, listener, cookie, csrf string
	key                        *identitytest.Key
	professionalID             string
}

func repoFile(t testing.TB, rel string) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", rel)
}

func newXFix(t testing.TB, db *gorm.DB) *xfix {
	t.Helper()
	key := make([]byte, 32)
	for i := range key {
		key[i] = byte(7 * i)
	}
	master, err := keys.FromBytes(key)
	if err != nil {
		t.Fatal(err)
	}
	return newXFixKeyed(t, db, master)
}

// newXFixKeyed is newXFix with a given master key (a key file, for rotation tests).
func newXFixKeyed(t testing.TB, db *gorm.DB, master *keys.Master) *xfix {
	t.Helper()
	var err error
	f := &xfix{t: t, db: db, clock: &testClock{t: time.Now().UTC().Truncate(time.Second)}, users: map[string]testUser{},
		logs: &syncBuffer{}}
	cfg := xConfig(t, "--dev-allow-software-keys")
	f.dataDir = cfg.DataDir
	f.srv, err = New(Deps{Config: cfg, DB: db, Keys: master, Log: slog.New(slog.NewTextHandler(io.MultiWriter(f.logs, testLogOut()), nil)), Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := f.srv.h.records.Import(ctx, []string{repoFile(t, "testdata/fhir/bundles")}, records.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"requester", "requester2", "staff", "officer", "dpo"} {
		role := strings.TrimSuffix(name, "2")
		ns, k := identitytest.Register(t, f.srv.Identity(), role)
		l := identity.ListenerFor(role)
		f.users[name] = testUser{id: ns.User.ID, listener: l, cookie: "gw_session_" + l + "=" + ns.Token,
			csrf: f.srv.h.csrfFor("session:" + ns.ID), key: k}
	}
	f.signer = approvalstest.NewSigner()
	f.signer.Enroll(f.users["officer"].id, false)
	f.domain, err = WireApprovals(db, master, f.srv.h.records, f.srv.Identity(), f.signer, f.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// approve files a request for the sample patient and has the officer approve it, released to the requester
// or to staff; it returns the request and the extract id.
func (f *xfix) approve(to approvals.RetrieverKind, ttl time.Duration, cats ...approvals.Category) (approvals.Request, string) {
	f.t.Helper()
	if len(cats) == 0 {
		cats = []approvals.Category{approvals.Results, approvals.Immunizations, approvals.Conditions}
	}
	ctx := context.Background()
	req, err := f.domain.FileRequest(ctx, approvals.Filing{RequesterID: f.users["requester"].id, Patient: samplePatient,
		Categories: cats, Purpose: approvals.PurposeCareContinuity, Justification: "Follow-up after transfer to our ward.",
		Urgency: approvals.Routine, Delivery: to})
	if err != nil {
		f.t.Fatalf("file request: %v", err)
	}
	officer := f.users["officer"].id
	p, err := f.domain.PrepareDecision(ctx, officer, req.ID, approvals.DecisionInput{Verdict: approvals.Approve,
		Retriever: to, ExpiresIn: ttl, WordingVersion: "review-v1"})
	if err != nil {
		f.t.Fatalf("prepare decision: %v", err)
	}
	out, err := f.domain.CompleteDecision(ctx, officer, p.ID, f.signer.Sign(officer, p.Options))
	if err != nil {
		f.t.Fatalf("complete decision: %v", err)
	}
	return req, out.ExtractID
}

// retrievePath is where a user posts to retrieve an extract: the page form or the API.
func retrievePath(listener, id string, api bool) string {
	base := map[string]string{Intake: "/extracts/", Console: "/handover/"}[listener]
	if api {
		base = map[string]string{Intake: "/api/v1/extracts/", Console: "/api/v1/handover/"}[listener]
	}
	return base + id + "/retrieve"
}

// retrieve posts a retrieval as user, on the user's listener unless listener says otherwise.
func (f *xfix) retrieve(user, id, format string, listener ...string) *httptest.ResponseRecorder {
	f.t.Helper()
	u := f.users[user]
	l := u.listener
	if len(listener) > 0 {
		l = listener[0]
	}
	form := url.Values{"format": {format}, "csrf": {u.csrf}}
	r := httptest.NewRequest(http.MethodPost, retrievePath(l, id, false), strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Origin", f.srv.origin(l))
	r.Header.Set("Cookie", u.cookie)
	return f.srv.call(l, r)
}

// count runs a COUNT query.
func (f *xfix) count(q string, args ...any) int64 {
	f.t.Helper()
	var n int64
	if err := f.db.Raw(q, args...).Scan(&n).Error; err != nil {
		f.t.Fatal(err)
	}
	return n
}

// extractState is every column of an extract a refusal must leave alone.
func (f *xfix) extractState(id string) string {
	f.t.Helper()
	var row map[string]any
	if err := f.db.Raw("SELECT retrieved_at, retrieved_by, revoked_at, expired_at, delivered_at, delivery_sha256, delivery_bytes, delivery_complete FROM extracts WHERE id = ?", id).
		Scan(&row).Error; err != nil {
		f.t.Fatal(err)
	}
	return fmt.Sprint(row)
}

// xConfig is testConfig for benchmarks too.
func xConfig(t testing.TB, args ...string) *Config {
	t.Helper()
	cfg := &Config{}
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	cfg.RegisterFlags(fs)
	if err := fs.Parse(append([]string{"--data-dir", t.TempDir(), "--intake-listen", "127.0.0.1:8080",
		"--console-listen", "127.0.0.1:8081"}, args...)); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Load(fs); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// testLogOut is where the test server logs: discarded, unless GATEWAY_TEST_LOG=1.
func testLogOut() io.Writer {
	if os.Getenv("GATEWAY_TEST_LOG") == "1" {
		return os.Stderr
	}
	return io.Discard
}

// post sends a JSON POST as user on the user's listener.
func (f *xfix) post(user, path string, body []byte) *httptest.ResponseRecorder {
	f.t.Helper()
	u := f.users[user]
	r := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Accept", "application/json")
	r.Header.Set("Origin", f.srv.origin(u.listener))
	r.Header.Set("Cookie", u.cookie)
	r.Header.Set(csrfHeader, u.csrf)
	return f.srv.call(u.listener, r)
}

// get sends a GET as user on the user's listener.
func (f *xfix) get(user, path string) *httptest.ResponseRecorder {
	f.t.Helper()
	u := f.users[user]
	r := httptest.NewRequest(http.MethodGet, path, nil)
	r.Header.Set("Cookie", u.cookie)
	return f.srv.call(u.listener, r)
}
