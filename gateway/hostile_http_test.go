package gateway

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"gorm.io/gorm"

	"gatewayd/gateway/identity"
	"gatewayd/gateway/identity/identitytest"
	"gatewayd/gateway/store/storetest"
)

// countingListener counts every byte the server reads from its clients.
type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{c, l.n}, nil
}

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// postHuge sends a POST declaring size bytes of multipart body, from intake's own origin without a CSRF token,
// writing the body until the server stops it; it returns the status the server answered.
func postHuge(t *testing.T, addr, origin, path string, size int64) int {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: %s\r\nOrigin: %s\r\nContent-Type: multipart/form-data; boundary=XX\r\nContent-Length: %d\r\n\r\n",
		path, addr, origin, size)
	go func() {
		chunk := bytes.Repeat([]byte("a"), 64<<10)
		io.WriteString(conn, "--XX\r\nContent-Disposition: form-data; name=\"csrf\"; filename=\"x\"\r\n\r\n")
		for sent := int64(0); sent < size; sent += int64(len(chunk)) {
			if _, err := conn.Write(chunk); err != nil {
				return // the server closed the connection: what we wanted
			}
		}
	}()
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	res.Body.Close()
	return res.StatusCode
}

// TestHugeMultipartRefusedAtTheDoor: a 50 MB anonymous multipart POST is refused with 413 before 1 MiB is
// read (the CSRF check never parses it), and 20 of them leave the server's memory where it was.
func TestHugeMultipartRefusedAtTheDoor(t *testing.T) {
	s := testServer(t, storetest.NewSQLite(t), testConfig(t))
	var read atomic.Int64
	srv := httptest.NewUnstartedServer(s.Intake())
	srv.Listener = countingListener{srv.Listener, &read}
	srv.Start()
	defer srv.Close()
	addr := srv.Listener.Addr().String()

	if code := postHuge(t, addr, s.cfg.PublicIntakeURL, "/auth/signin/begin", 50<<20); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("50 MB multipart: %d, want 413", code)
	}
	if n := read.Load(); n >= 1<<20 {
		t.Fatalf("the server read %d bytes of a refused body", n)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range 20 {
		if code := postHuge(t, addr, s.cfg.PublicIntakeURL, "/auth/signin/begin", 50<<20); code != http.StatusRequestEntityTooLarge {
			t.Fatalf("50 MB multipart: %d", code)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapInuse) - int64(before.HeapInuse); grew > 8<<20 {
		t.Fatalf("heap grew by %d bytes over 20 refused uploads", grew)
	}
	if n := read.Load(); n >= 21<<20 {
		t.Fatalf("the server read %d bytes for 21 refused bodies", n)
	}
}

// TestBodyLimitsOnEveryRoute: within the size limit a multipart body is still refused (415: no route takes
// one), and a body over the limit without a declared length is cut, on both listeners.
func TestBodyLimitsOnEveryRoute(t *testing.T) {
	s := testServer(t, storetest.NewSQLite(t), testConfig(t))
	for _, listener := range []string{Intake, Console} {
		req := httptest.NewRequest("POST", "/auth/signin/begin", strings.NewReader("--XX\r\n\r\n--XX--\r\n"))
		req.Header.Set("Content-Type", "multipart/form-data; boundary=XX")
		req.Header.Set("Origin", s.origin(listener))
		if res := s.call(listener, req); res.Code != http.StatusUnsupportedMediaType {
			t.Fatalf("%s: small multipart: %d", listener, res.Code)
		}
		req = httptest.NewRequest("POST", "/auth/signin/begin", io.LimitReader(neverEnding('a'), maxBody+1))
		req.ContentLength = -1 // chunked: no declared length to refuse on
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", s.origin(listener))
		if res := s.call(listener, req); res.Code < 400 || res.Code >= 500 {
			t.Fatalf("%s: unbounded body: %d", listener, res.Code)
		}
	}
}

type neverEnding byte

func (b neverEnding) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(b)
	}
	return len(p), nil
}

// TestBadIDsAre404: a NUL, a 60,000-character id, CR/LF, quotes: 404 on every id route of both listeners,
// never 500 (PostgreSQL refuses NUL in text), and no audit row or log line holds them.
func TestBadIDsAre404(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		var logs syncBuffer
		s, err := New(Deps{Config: testConfig(t, "--dev-allow-software-keys"), DB: db, Log: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		req, _ := identitytest.Register(t, s.Identity(), identity.RoleRequester)
		off, _ := identitytest.Register(t, s.Identity(), identity.RoleOfficer)
		adm, _ := identitytest.Register(t, s.Identity(), identity.RoleAdmin)
		staff, _ := identitytest.Register(t, s.Identity(), identity.RoleStaff)
		byRole := map[string]client{identity.RoleRequester: newClient(s, Intake, req), identity.RoleOfficer: newClient(s, Console, off),
			identity.RoleAdmin: newClient(s, Console, adm), identity.RoleStaff: newClient(s, Console, staff)}
		audited := countRows(t, db, "audit_events")
		bad := []string{"%00", strings.Repeat("a", 60000), "%0D%0AX-Injected:%201", "abc%22%3E", url.PathEscape(strings.Repeat("0", 31) + "\x00")}
		routes := 0
		for listener, table := range map[string][]Route{Intake: s.IntakeRoutes(), Console: s.ConsoleRoutes()} {
			for _, r := range table {
				if !strings.Contains(r.Path, ":") {
					continue
				}
				c, ok := byRole[string(r.Who)]
				if !ok {
					c = byRole[identity.RoleRequester]
					if listener == Console {
						c = byRole[identity.RoleOfficer]
					}
				}
				routes++
				for _, b := range bad {
					path := strings.NewReplacer(":id", b, ":token", b).Replace(r.Path)
					var body any
					if r.Method != http.MethodGet {
						body = "{}"
					}
					if res := c.do(r.Method, path, body); res.Code != http.StatusNotFound {
						t.Errorf("%s %s %s with a bad id (%.20q): %d, want 404", listener, r.Method, r.Path, b, res.Code)
					}
				}
			}
		}
		if routes < 16 {
			t.Fatalf("only %d id routes walked", routes)
		}
		if n := countRows(t, db, "audit_events"); n != audited {
			t.Fatalf("bad ids wrote %d audit rows", n-audited)
		}
		if l := logs.Bytes(); bytes.Contains(l, []byte("aaaaaaaaaaaaaaaa")) || bytes.Contains(l, []byte("X-Injected")) || bytes.Contains(l, []byte{0}) {
			t.Fatalf("a bad id reached the log")
		}
	})
}

// TestGarbledForwardedAddressRefusesConsole: behind a trusted proxy, a forwarded address that is not a bare IP
// (a port, brackets, "unknown", an empty element) gets the console refused, never allowed.
func TestGarbledForwardedAddressRefusesConsole(t *testing.T) {
	s := testServer(t, storetest.NewSQLite(t), testConfig(t, "--trusted-proxies", "127.0.0.1/32"))
	for _, xff := range []string{"203.0.113.5:4711", "[2001:db8::5]", "unknown", "", "127.0.0.2,,127.0.0.1", " , ", "fe80::1%eth0",
		"127.0.0.2:80", "[::1]"} {
		req := httptest.NewRequest("GET", "/healthz", nil)
		req.Header.Set("X-Forwarded-For", xff)
		if res := s.call(Console, req); res.Code != http.StatusForbidden {
			t.Errorf("X-Forwarded-For %q: %d, want 403", xff, res.Code)
		}
	}
	for _, ok := range []string{"127.0.0.2", "::1", "127.0.0.2, 127.0.0.1"} {
		req := httptest.NewRequest("GET", "/healthz", nil)
		req.Header.Set("X-Forwarded-For", ok)
		if res := s.call(Console, req); res.Code != http.StatusOK {
			t.Errorf("X-Forwarded-For %q: %d, want 200", ok, res.Code)
		}
	}
	req := httptest.NewRequest("GET", "/healthz", nil)
	if res := s.call(Console, req); res.Code != http.StatusOK {
		t.Errorf("the proxy itself, no header: %d", res.Code)
	}
}

// TestSignLogsTheDecidedRequest: A's signature posted to B's sign URL decides A (the preparation says which),
// and the log line and the redirect name A, not B. A preparation id that is no id is refused, never a 500.
func TestSignLogsTheDecidedRequest(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		f := newFlowFixture(t, db)
		var logs syncBuffer
		f.s.h.log = slog.New(slog.NewTextHandler(&logs, nil))
		a, b := f.file(t, busterID), f.file(t, busterID)
		approve := url.Values{"verdict": {"approve"}, "categories": {"conditions"}, "retriever": {"requester"}, "expires_hours": {"24"}}
		pa := f.prepare(t, a, approve)
		f.prepare(t, b, approve)
		for _, bad := range []string{"%00", strings.Repeat("a", 60000), "%0D%0A"} {
			if res := f.officer.do("POST", "/review/"+b+"/sign?preparation="+bad, "{}"); res.Code >= 500 || res.Code < 400 {
				t.Fatalf("preparation %.10q: %d", bad, res.Code)
			}
		}
		resp, err := f.key.Assert(pa.Options)
		if err != nil {
			t.Fatal(err)
		}
		res := f.officer.do("POST", "/review/"+b+"/sign?preparation="+pa.Preparation, string(resp))
		if res.Code != 200 || !strings.Contains(res.Body.String(), "signed="+a) || strings.Contains(res.Body.String(), b) {
			t.Fatalf("sign A at B's URL: %d %s", res.Code, res.Body)
		}
		line := ""
		for _, l := range strings.Split(string(logs.Bytes()), "\n") {
			if strings.Contains(l, "decision signed") {
				line = l
			}
		}
		if !strings.Contains(line, "approval_request="+a) || strings.Contains(line, b) {
			t.Fatalf("log line names another request: %q", line)
		}
	})
}
