package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"gorm.io/gorm"

	"gatewayd/gateway/audit"
	"gatewayd/gateway/keys"
	"gatewayd/gateway/store"
	"gatewayd/gateway/store/storetest"
)

// twoInstances are two servers on one database with one clock, as two instances behind a load balancer.
func twoInstances(t *testing.T, db *gorm.DB, clock *testClock, args ...string) [2]*Server {
	t.Helper()
	var out [2]*Server
	// Instances share the key file, as in production: the database refuses another key.
	master, err := keys.FromBytes(bytes.Repeat([]byte{3}, keys.Size))
	if err != nil {
		t.Fatal(err)
	}
	for i := range out {
		s, err := New(Deps{Config: testConfig(t, args...), DB: db, Keys: master, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		out[i] = s
	}
	return out
}

// TestSignInLimitSharedByInstances: the ceremony limit counts one client's calls on every instance together;
// the 31st call in the window is refused by whichever instance gets it, and a new window starts afresh.
func TestSignInLimitSharedByInstances(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		clock := &testClock{t: time.Now().UTC()}
		both := twoInstances(t, db, clock)
		begin := func(s *Server) int {
			req := httptest.NewRequest("POST", "/auth/signin/begin", strings.NewReader(`{}`))
			req.Header.Set("Origin", s.cfg.PublicIntakeURL)
			req.Header.Set(csrfHeader, s.h.csrfFor("pre:intake:p"))
			req.AddCookie(&http.Cookie{Name: "gw_pre_intake", Value: "p"})
			return s.call(Intake, req).Code
		}
		for i := 0; i < signinAttemptsPerMinute; i++ {
			if code := begin(both[i%2]); code != http.StatusOK {
				t.Fatalf("attempt %d: %d", i+1, code)
			}
		}
		for i, s := range both {
			if code := begin(s); code != http.StatusTooManyRequests {
				t.Fatalf("attempt %d on instance %d: %d, want 429", signinAttemptsPerMinute+1+i, i, code)
			}
		}
		clock.Set(clock.Now().Add(limitWindow - time.Second))
		if code := begin(both[0]); code != http.StatusTooManyRequests {
			t.Fatalf("still in the window: %d, want 429", code)
		}
		clock.Set(clock.Now().Add(time.Second))
		if code := begin(both[1]); code != http.StatusOK {
			t.Fatalf("a new window: %d, want 200", code)
		}
	})
}

// TestRefusalAuditThrottleSharedByInstances: refusals of one address on two instances make one audit row a
// minute; the next row says how many were not written; the rows of all addresses are capped per minute.
func TestRefusalAuditThrottleSharedByInstances(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		clock := &testClock{t: time.Now().UTC()}
		both := twoInstances(t, db, clock, "--console-allow", "10.9.0.0/16")
		refuse := func(s *Server, addr string) {
			req := httptest.NewRequest("GET", "/", nil)
			req.RemoteAddr = addr + ":40000"
			w := httptest.NewRecorder()
			s.console.ServeHTTP(w, req)
			if w.Code != http.StatusForbidden {
				t.Fatalf("%s: %d, want 403", addr, w.Code)
			}
		}
		rows := func(addr string) []map[string]any {
			var details []string
			// In chain order: the rows linked first (on PostgreSQL the chainer links them after their commits).
			if _, err := audit.Link(context.Background(), db); err != nil {
				t.Fatal(err)
			}
			db.Raw("SELECT details FROM audit_events WHERE action = 'console.refused' AND actor = ? ORDER BY seq", "ip:"+addr).Scan(&details)
			var out []map[string]any
			for _, d := range details {
				var m map[string]any
				json.Unmarshal([]byte(d), &m)
				out = append(out, m)
			}
			return out
		}
		for i := 0; i < 5; i++ {
			refuse(both[i%2], "192.0.2.1")
		}
		if r := rows("192.0.2.1"); len(r) != 1 || r[0]["suppressed_since_last"] != float64(0) {
			t.Fatalf("five refusals in a minute on two instances: rows %v, want one", r)
		}
		clock.Set(clock.Now().Add(limitWindow))
		refuse(both[1], "192.0.2.1")
		if r := rows("192.0.2.1"); len(r) != 2 || r[1]["suppressed_since_last"] != float64(4) {
			t.Fatalf("next minute: rows %v, want a second one reporting 4 not written", r)
		}
		// Many addresses at once: at most refusalAuditsPerWindow rows in the window.
		var before int64
		db.Raw("SELECT COUNT(*) FROM audit_events WHERE action = 'console.refused'").Scan(&before)
		for i := 0; i < refusalAuditsPerWindow+10; i++ {
			refuse(both[i%2], "198.51.100."+strconv.Itoa(i+1))
		}
		var after int64
		db.Raw("SELECT COUNT(*) FROM audit_events WHERE action = 'console.refused'").Scan(&after)
		// The window of the global cap began with the second row of 192.0.2.1.
		if got := after - before; got != refusalAuditsPerWindow-1 {
			t.Fatalf("%d rows for %d addresses, want %d (the cap)", got, refusalAuditsPerWindow+10, refusalAuditsPerWindow-1)
		}
	})
}

// TestSignInLimitFailsClosed: when the database cannot count a ceremony call, the call is refused (503, come
// back later), not let through uncounted.
func TestSignInLimitFailsClosed(t *testing.T) {
	db := storetest.NewSQLite(t)
	s := testServer(t, db, testConfig(t))
	if err := store.Close(db); err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("POST", "/auth/signin/begin", strings.NewReader(`{}`))
	req.Header.Set("Origin", s.cfg.PublicIntakeURL)
	req.Header.Set(csrfHeader, s.h.csrfFor("pre:intake:p"))
	req.AddCookie(&http.Cookie{Name: "gw_pre_intake", Value: "p"})
	if code := s.call(Intake, req).Code; code != http.StatusServiceUnavailable {
		t.Fatalf("ceremony call with the database gone: %d, want 503", code)
	}
}
