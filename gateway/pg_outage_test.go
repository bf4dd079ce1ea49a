package gateway

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gatewayd/gateway/store"
)

// pgCluster is a PostgreSQL server of the test's own, run as an unprivileged user (initdb refuses root), so
// that the test can stop and start it.
type pgCluster struct {
	t        *testing.T
	bin, dir string
	port     int
	owner    string
	uid, gid int
	stopped  bool
}

const pgTestUser = "pgtest"

func startCluster(t *testing.T) *pgCluster {
	t.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(bins) == 0 || os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true: the PostgreSQL outage test needs PostgreSQL's binaries and root (found %v, euid %d)", bins, os.Geteuid())
		}
		t.Skip("no PostgreSQL binaries, or not root: outage test skipped")
	}
	u, err := user.Lookup(pgTestUser)
	if err != nil {
		if out, err := exec.Command("useradd", "-m", pgTestUser).CombinedOutput(); err != nil {
			t.Fatalf("useradd %s: %v %s", pgTestUser, err, out)
		}
		if u, err = user.Lookup(pgTestUser); err != nil {
			t.Fatal(err)
		}
	}
	c := &pgCluster{t: t, bin: filepath.Dir(bins[len(bins)-1]), owner: u.Username}
	c.uid, _ = strconv.Atoi(u.Uid)
	c.gid, _ = strconv.Atoi(u.Gid)
	// Not t.TempDir: its parent is root's, mode 0700, which the cluster's user cannot enter.
	if c.dir, err = os.MkdirTemp("/tmp", "gw-pgoutage-"); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(c.dir, c.uid, c.gid); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c.port = ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	c.run("initdb", "-D", filepath.Join(c.dir, "data"), "-A", "trust", "-U", "postgres", "--no-sync")
	t.Cleanup(func() {
		if !c.stopped {
			c.run("pg_ctl", "-D", filepath.Join(c.dir, "data"), "-m", "immediate", "-w", "stop")
		}
		os.RemoveAll(c.dir)
	})
	c.start()
	return c
}

// run runs one of PostgreSQL's programs as the cluster's user.
func (c *pgCluster) run(prog string, args ...string) {
	c.t.Helper()
	out, err := exec.Command("runuser", append([]string{"-u", c.owner, "--", filepath.Join(c.bin, prog)}, args...)...).CombinedOutput()
	if err != nil {
		c.t.Fatalf("%s: %v\n%s", prog, err, out)
	}
}

func (c *pgCluster) start() {
	c.run("pg_ctl", "-D", filepath.Join(c.dir, "data"), "-l", filepath.Join(c.dir, "log"), "-w", "-o",
		fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off", c.port, c.dir), "start")
	c.stopped = false
}

func (c *pgCluster) stop() {
	c.run("pg_ctl", "-D", filepath.Join(c.dir, "data"), "-m", "fast", "-w", "stop")
	c.stopped = true
}

func (c *pgCluster) url(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.port, db)
}

// PostgreSQL stopped under load: every answer is a 503 with Retry-After and the "try again later" message,
// none shows anything internal (driver, address, SQL), health checks say so too; after PostgreSQL is back,
// service resumes within 2 s, without a restart of the gateway.
// randomToken matches a run of base64url or hex characters as long as the page's random tokens and ids.
var randomToken = regexp.MustCompile(`[A-Za-z0-9_-]{20,}`)

func TestPostgresOutageUnderLoad(t *testing.T) {
	c := startCluster(t)
	ctx := context.Background()
	admin, err := store.Open(ctx, c.url("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.Exec("CREATE DATABASE gateway").Error; err != nil {
		t.Fatal(err)
	}
	store.Close(admin)
	db, err := store.Open(ctx, c.url("gateway"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close(db) })
	if _, err := store.Up(ctx, db); err != nil {
		t.Fatal(err)
	}
	f := newXFix(t, db)
	u := f.users["requester"]
	get := func(path string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodGet, path, nil)
		r.Header.Set("Cookie", u.cookie)
		return f.srv.call(Intake, r)
	}
	if w := get("/api/v1/requests"); w.Code != http.StatusOK {
		t.Fatalf("before the outage: %d %s", w.Code, w.Body)
	}

	// Load: clients list their requests (page and API) without pause until told to stop.
	var (
		down      atomic.Bool // set once pg_ctl stop has returned
		outage    atomic.Int64
		nbad      atomic.Int64
		mu        sync.Mutex
		bad       []string
		stop      = make(chan struct{})
		wg        sync.WaitGroup
		internals = []string{"pgx", "pgconn", "dial", "SQLSTATE", "sql:", "127.0.0.1:" + strconv.Itoa(c.port), "connection refused", "gorm"}
	)
	for i := range 8 {
		path := []string{"/api/v1/requests", "/requests"}[i%2]
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				w := get(path)
				if !down.Load() {
					continue
				}
				outage.Add(1)
				// Random tokens (CSRF, request ids) are taken out first: by chance they may spell "pgx" or "dial".
				body := randomToken.ReplaceAllString(w.Body.String(), "")
				problem := ""
				if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
					problem = fmt.Sprintf("%s: %d (Retry-After %q)", path, w.Code, w.Header().Get("Retry-After"))
				}
				for _, s := range internals {
					if strings.Contains(body, s) {
						problem = fmt.Sprintf("%s: the answer shows %q", path, s)
					}
				}
				if problem != "" {
					mu.Lock()
					bad = append(bad, problem)
					mu.Unlock()
					nbad.Add(1)
				}
			}
		})
	}
	c.stop()
	down.Store(true)
	// Let the clients meet the outage a few hundred times (no sleep: the count is the clock).
	for outage.Load() < 400 {
		select {
		case <-t.Context().Done():
			t.Fatal("the test ended during the outage")
		default:
		}
		if nbad.Load() > 0 {
			break
		}
	}
	r := httptest.NewRequest(http.MethodGet, "/readyz", nil)
	r.Header.Set("Cookie", f.users["officer"].cookie)
	if w := f.srv.call(Console, r); w.Code != http.StatusServiceUnavailable {
		t.Errorf("/readyz during the outage: %d", w.Code)
	}
	if w := get("/healthz"); w.Code != http.StatusOK {
		t.Errorf("/healthz (with a session cookie) during the outage: %d", w.Code)
	}
	down.Store(false)
	close(stop)
	wg.Wait()
	for i, b := range bad {
		if i == 5 {
			t.Errorf("... and %d more", len(bad)-5)
			break
		}
		t.Error(b)
	}
	t.Logf("%d answers during the outage", outage.Load())

	c.start()
	back := time.Now()
	for {
		if w := get("/api/v1/requests"); w.Code == http.StatusOK {
			break
		}
		if time.Since(back) > 2*time.Second {
			t.Fatalf("service not back 2 s after PostgreSQL: %d", get("/api/v1/requests").Code)
		}
	}
	t.Logf("service back %v after PostgreSQL", time.Since(back))
}
