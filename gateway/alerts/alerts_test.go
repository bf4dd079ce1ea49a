package alerts

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"gatewayd/approvals"
)

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

func testAlert() approvals.Alert {
	return approvals.Alert{ID: "a1b2", Kind: approvals.AlertFiled, Urgency: approvals.UrgencyEmergency,
		Subject: "request:0123456789abcdef0123456789abcdef", QueueCount: 3, CreatedAt: time.Date(2026, 11, 30, 21, 0, 0, 0, time.UTC)}
}

// TestWebhookInsideGetsTheAlert: a webhook on an allowed address receives the alert as JSON: ids, count,
// urgency, nothing else.
func TestWebhookInsideGetsTheAlert(t *testing.T) {
	got := make(chan []byte, 1)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- b
	}))
	defer hook.Close()
	s, err := New(context.Background(), "", hook.URL+"/alerts", loopback)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(context.Background(), testAlert()); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(<-got, &m); err != nil {
		t.Fatal(err)
	}
	if len(m) != 6 || m["urgency"] != "emergency" || m["subject"] != testAlert().Subject || m["queue_count"] != 3.0 || m["kind"] != "request.filed" {
		t.Fatalf("webhook body: %v", m)
	}
}

// TestWebhookOutsideIsRefused: a webhook whose host resolves outside the allowed networks is refused at start;
// one that was inside when the sender started is refused at send once it no longer is, and nothing is sent.
func TestWebhookOutsideIsRefused(t *testing.T) {
	for _, u := range []string{"http://192.0.2.10/alerts", "http://[2001:db8::1]/x", "http://10.1.2.3:8080/x"} {
		if _, err := New(context.Background(), "", u, loopback); !errors.Is(err, ErrOutside) {
			t.Fatalf("%s: %v", u, err)
		}
	}
	for _, u := range []string{"ftp://127.0.0.1/x", "http://user:pw@127.0.0.1/x", "127.0.0.1:80"} {
		if _, err := New(context.Background(), "", u, loopback); err == nil || !strings.Contains(err.Error(), "--alert-webhook") {
			t.Fatalf("%s: %v", u, err)
		}
	}
	hits := 0
	hook := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits++ }))
	defer hook.Close()
	s, err := New(context.Background(), "", hook.URL, loopback)
	if err != nil {
		t.Fatal(err)
	}
	s.allowed = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	if err := s.Send(context.Background(), testAlert()); !errors.Is(err, ErrOutside) || hits != 0 {
		t.Fatalf("send outside: %v, %d hits", err, hits)
	}
	// The dial itself is checked too, whatever the resolution said.
	s.allowed = loopback
	if err := s.check("192.0.2.1:80"); !errors.Is(err, ErrOutside) {
		t.Fatalf("dial check: %v", err)
	}
}

// TestSyslogLineIsRFC5424: the alert goes to the local syslog socket as one RFC 5424 message (facility log
// alert, severity alert for an emergency) carrying the ids in structured data.
func TestSyslogLineIsRFC5424(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "log")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s, err := New(context.Background(), sock, "", loopback)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(context.Background(), testAlert()); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	ln.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := ln.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	line := string(buf[:n])
	re := regexp.MustCompile(`^<113>1 2026-11-30T21:00:00(\.0+)?Z \S+ gatewayd \d+ request\.filed \[gatewayd-alert@32473 id="a1b2" urgency="emergency" subject="request:0123456789abcdef0123456789abcdef" queue="3"\] emergency request\.filed request:0123456789abcdef0123456789abcdef \(3 waiting\)$`)
	if !re.MatchString(line) {
		t.Fatalf("syslog line: %q", line)
	}
}
