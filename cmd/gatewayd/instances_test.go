package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"gatewayd/approvals"
	"gatewayd/approvals/approvalstest"
	"gatewayd/gateway"
	"gatewayd/gateway/identity"
	"gatewayd/gateway/identity/identitytest"
	"gatewayd/gateway/records"
	"gatewayd/gateway/store"
	"gatewayd/gateway/store/storetest"
)

// The public origins every instance shares, as behind a load balancer: passkeys and CSRF checks are bound to
// them, not to the instance's own port. Nothing listens there; the test talks to each instance directly.
const (
	lbIntake  = "http://localhost:18443"
	lbConsole = "http://localhost:18444"
)

var samplePatient = approvals.Identifier{System: "https://github.com/synthetichealth/synthea",
	Value: "fc712d1f-5a2e-4407-9c55-a2a2bad623c2"}

// instance is one `gatewayd serve` process.
type instance struct {
	intake, console string // http://127.0.0.1:port
	cmd             *exec.Cmd
	out             *lockedBuffer
	exited          chan error
	stopped         bool
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// buildGatewayd builds the command into the test's folder, as it ships (no race detector in the binary: the
// test is about several processes, and the in-process tests already run under -race).
func buildGatewayd(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "gatewayd")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// freePorts returns n distinct free ports: all n are held open together, so the kernel cannot hand the
// same one out twice.
func freePorts(t *testing.T, n int) []string {
	t.Helper()
	ports := make([]string, n)
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		ports[i] = strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// startInstance starts `gatewayd serve` on two fresh ports and waits until its console says ready.
func startInstance(t *testing.T, bin string, env []string) *instance {
	t.Helper()
	in := &instance{out: &lockedBuffer{}, exited: make(chan error, 1)}
	ports := freePorts(t, 2)
	ip, cp := ports[0], ports[1]
	in.intake, in.console = "http://127.0.0.1:"+ip, "http://127.0.0.1:"+cp
	in.cmd = exec.Command(bin, "serve", "--intake-listen", "127.0.0.1:"+ip, "--console-listen", "127.0.0.1:"+cp)
	in.cmd.Env = append(os.Environ(), env...)
	in.cmd.Stdout, in.cmd.Stderr = in.out, in.out
	if err := in.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { in.exited <- in.cmd.Wait() }()
	t.Cleanup(func() { in.stop(t) })
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(in.console + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return in
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("instance not ready: %v\n%s", err, in.out)
		}
		select {
		case err := <-in.exited:
			t.Fatalf("instance exited: %v\n%s", err, in.out)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stop ends the process with SIGTERM (a graceful stop) and waits for it.
func (in *instance) stop(t *testing.T) {
	if in.stopped {
		return
	}
	in.stopped = true
	in.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-in.exited:
		if err != nil {
			t.Errorf("instance stopped with %v\n%s", err, in.out)
		}
	case <-time.After(20 * time.Second):
		in.cmd.Process.Kill()
		t.Errorf("instance did not stop on SIGTERM\n%s", in.out)
	}
}

// clientFrom is an HTTP client whose connections come from a loopback address of its own, so that each part
// of the test has its own rate-limit key.
func clientFrom(addr string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(addr)}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// post sends body with the listener's public origin, the CSRF token and the cookies given.
func post(t *testing.T, c *http.Client, url, origin, csrf, ctype string, body []byte, cookies ...*http.Cookie) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Origin", origin)
	req.Header.Set("X-CSRF-Token", csrf)
	req.Header.Set("Content-Type", ctype)
	for _, ck := range cookies {
		req.AddCookie(ck)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

var csrfMeta = regexp.MustCompile(`name="csrf-token" content="([^"]+)"`)

// page gets path and returns the page's CSRF token and the cookies it set.
func page(t *testing.T, c *http.Client, url string, cookies ...*http.Cookie) (string, []*http.Cookie) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for _, ck := range cookies {
		req.AddCookie(ck)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m := csrfMeta.FindSubmatch(body)
	if resp.StatusCode != http.StatusOK || m == nil {
		t.Fatalf("GET %s: %d, no CSRF token", url, resp.StatusCode)
	}
	return string(m[1]), resp.Cookies()
}

// TestThreeInstancesOnePostgres runs three real `gatewayd serve` processes on one PostgreSQL database, as a
// hospital runs them behind a load balancer, and checks what must hold across them: one extract is retrieved
// once, the sign-in limit counts every instance, a ceremony begun on one finishes on another, and the
// periodic jobs act once.
func TestThreeInstancesOnePostgres(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	bin := buildGatewayd(t)
	ctx := context.Background()
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "gateway.key")
	if out, err := exec.Command(bin, "keys", "init", "--key-file", keyFile).CombinedOutput(); err != nil {
		t.Fatalf("keys init: %v\n%s", err, out)
	}

	// The test's own view of the same database: it makes the users, the records and the signed decisions (the
	// signing pages have tests of their own), as the CLI and other instances would.
	cfg := &gateway.Config{}
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	cfg.RegisterFlags(fs)
	if err := fs.Parse([]string{"--data-dir", dir, "--db", dsn, "--key-file", keyFile, "--public-intake-url", lbIntake,
		"--public-console-url", lbConsole, "--dev-allow-software-keys"}); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Load(fs); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	db, master, err := gateway.Start(ctx, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close(db) })
	local, err := gateway.New(gateway.Deps{Config: cfg, DB: db, Keys: master, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := local.Records().Import(ctx, []string{filepath.Join("..", "..", "testdata", "fhir", "bundles")}, records.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	requester, _ := identitytest.Register(t, local.Identity(), identity.RoleRequester)
	officer, _ := identitytest.Register(t, local.Identity(), identity.RoleOfficer)
	signer := approvalstest.NewSigner()
	signer.Enroll(officer.User.ID, false)
	domainAt := func(now func() time.Time) *approvals.Service {
		svc, err := gateway.WireApprovals(db, master, local.Records(), local.Identity(), signer, now)
		if err != nil {
			t.Fatal(err)
		}
		return svc
	}
	approve := func(svc *approvals.Service, ttl time.Duration) (string, string) {
		req, err := svc.FileRequest(ctx, approvals.Filing{RequesterID: requester.User.ID, Patient: samplePatient,
			Categories: []approvals.Category{approvals.Immunizations, approvals.Conditions}, Purpose: approvals.PurposeCareContinuity,
			Justification: "Follow-up after transfer to our ward.", Urgency: approvals.Routine, Delivery: approvals.ToRequester})
		if err != nil {
			t.Fatal(err)
		}
		if ttl == 0 {
			return req.ID, ""
		}
		p, err := svc.PrepareDecision(ctx, officer.User.ID, req.ID, approvals.DecisionInput{Verdict: approvals.Approve,
			Retriever: approvals.ToRequester, ExpiresIn: ttl, WordingVersion: "review-v1"})
		if err != nil {
			t.Fatal(err)
		}
		out, err := svc.CompleteDecision(ctx, officer.User.ID, p.ID, signer.Sign(officer.User.ID, p.Options))
		if err != nil {
			t.Fatal(err)
		}
		return req.ID, out.ExtractID
	}
	// Work for the jobs, made before the instances start so that all three find it at their first run: a
	// request filed eight days ago (past --max-pending) and an extract whose hour passed unretrieved.
	past := time.Now().Add(-8 * 24 * time.Hour)
	old := domainAt(func() time.Time { return past })
	lapsing, _ := approve(old, 0)
	_, expiring := approve(old, time.Hour)
	_, ready := approve(domainAt(time.Now), 24*time.Hour)

	env := []string{"GATEWAY_DB=" + dsn, "GATEWAY_KEY_FILE=" + keyFile, "GATEWAY_DATA_DIR=" + dir,
		"GATEWAY_PUBLIC_INTAKE_URL=" + lbIntake, "GATEWAY_PUBLIC_CONSOLE_URL=" + lbConsole, "GATEWAY_JOBS_INTERVAL=100ms"}
	var instances []*instance
	for range 3 {
		instances = append(instances, startInstance(t, bin, env))
	}

	t.Run("one retrieval of 50 over three instances", func(t *testing.T) {
		c := clientFrom("127.0.0.11")
		session := &http.Cookie{Name: "gw_session_intake", Value: requester.Token}
		csrf, _ := page(t, c, instances[0].intake+"/home", session)
		body := []byte(url.Values{"format": {"fhir"}}.Encode())
		codes := make([]int, 50)
		var wg sync.WaitGroup
		for i := range codes {
			wg.Go(func() {
				req, _ := http.NewRequest(http.MethodPost, instances[i%3].intake+"/api/v1/extracts/"+ready+"/retrieve", bytes.NewReader(body))
				req.Header.Set("Origin", lbIntake)
				req.Header.Set("X-CSRF-Token", csrf)
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.AddCookie(session)
				resp, err := c.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				codes[i] = resp.StatusCode
			})
		}
		wg.Wait()
		count := map[int]int{}
		for _, code := range codes {
			count[code]++
		}
		if count[http.StatusOK] != 1 || count[http.StatusOK]+count[http.StatusGone] != 50 {
			t.Fatalf("statuses %v: want one 200 and 49 410", count)
		}
		var retrieved, refused int64
		db.Raw("SELECT COUNT(*) FROM audit_events WHERE action = 'extract.retrieved' AND subject = ?", "extract:"+ready).Scan(&retrieved)
		db.Raw("SELECT COUNT(*) FROM audit_events WHERE action = 'extract.refused' AND subject = ?", "extract:"+ready).Scan(&refused)
		if retrieved != 1 || refused != 49 {
			t.Fatalf("audit: %d retrieved, %d refused; want 1 and 49", retrieved, refused)
		}
	})

	t.Run("the sign-in limit holds across instances", func(t *testing.T) {
		c := clientFrom("127.0.0.12")
		csrf, cookies := page(t, c, instances[0].intake+"/signin")
		begin := func(in *instance) int {
			return post(t, c, in.intake+"/auth/signin/begin", lbIntake, csrf, "application/json", []byte(`{}`), cookies...).StatusCode
		}
		for i := range 30 {
			if code := begin(instances[i%3]); code != http.StatusOK {
				t.Fatalf("attempt %d on instance %d: %d", i+1, i%3, code)
			}
		}
		for i, in := range instances {
			if code := begin(in); code != http.StatusTooManyRequests {
				t.Fatalf("attempt %d, on instance %d: %d, want 429", 31+i, i, code)
			}
		}
	})

	t.Run("a registration begun on one instance finishes on another", func(t *testing.T) {
		c := clientFrom("127.0.0.13")
		inv, err := local.Identity().Invite(ctx, "cli", identity.NewInvitation{Role: identity.RoleRequester, DisplayName: "Dr Crossing"})
		if err != nil {
			t.Fatal(err)
		}
		csrf, cookies := page(t, c, instances[0].intake+"/signin")
		resp := post(t, c, instances[0].intake+"/auth/register/begin", lbIntake, csrf, "application/json",
			[]byte(`{"token":"`+inv.Token+`"}`), cookies...)
		var begun struct {
			Ceremony string          `json:"ceremony"`
			Options  json.RawMessage `json:"options"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&begun); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("begin on instance 0: %d %v", resp.StatusCode, err)
		}
		att, err := identitytest.NewKey(lbIntake).Attest(begun.Options)
		if err != nil {
			t.Fatal(err)
		}
		resp = post(t, c, instances[1].intake+"/auth/register/finish?ceremony="+url.QueryEscape(begun.Ceremony), lbIntake, csrf,
			"application/json", att, cookies...)
		if resp.StatusCode != http.StatusOK {
			body, _ := io.ReadAll(resp.Body)
			t.Fatalf("finish on instance 1: %d %s", resp.StatusCode, body)
		}
		var session *http.Cookie
		for _, ck := range resp.Cookies() {
			if ck.Name == "gw_session_intake" {
				session = ck
			}
		}
		if session == nil {
			t.Fatal("no session cookie after registration")
		}
		// The session opened by instance 1 is good on instance 2.
		page(t, c, instances[2].intake+"/home", session)
	})

	t.Run("the jobs act once", func(t *testing.T) {
		deadline := time.Now().Add(30 * time.Second)
		for {
			var status string
			var expired int64
			db.Raw("SELECT status FROM approval_requests WHERE id = ?", lapsing).Scan(&status)
			db.Raw("SELECT COUNT(*) FROM extracts WHERE id = ? AND expired_at IS NOT NULL", expiring).Scan(&expired)
			if status == string(approvals.StatusLapsed) && expired == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("jobs did not run: request %s, extract expired %d", status, expired)
			}
			<-time.After(50 * time.Millisecond)
		}
	})

	// Stop all three (every job run has ended then), and count the jobs' rows; the chain written by three
	// processes at once verifies.
	for _, in := range instances {
		in.stop(t)
	}
	for action, subject := range map[string]string{"request.lapsed": "request:" + lapsing, "extract.expired": "extract:" + expiring} {
		var n int64
		db.Raw("SELECT COUNT(*) FROM audit_events WHERE action = ? AND subject = ?", action, subject).Scan(&n)
		if n != 1 {
			t.Errorf("%d %s rows for %s, want 1", n, action, subject)
		}
	}
	if out, err := exec.Command(bin, "audit", "verify", "--db", dsn, "--key-file", keyFile).CombinedOutput(); err != nil {
		t.Fatalf("audit verify: %v\n%s", err, out)
	} else {
		t.Log(strings.TrimSpace(string(out)))
	}
}
