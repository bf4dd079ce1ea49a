// Package alerts sends the gateway's alerts (a request entered the queue, an emergency, an overdue post-hoc
// review) inside the hospital: to the local syslog as RFC 5424 messages and, if configured, to an internal
// webhook. An alert carries ids, a count and an urgency, never patient data. The webhook's host must resolve
// only to addresses of the allowed internal networks: checked at start, at each send, and on the address each
// connection actually dials (so a DNS answer that changes cannot lead outside). No proxy, no redirect.
package alerts

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"syscall"
	"time"

	"gatewayd/approvals"
	"gatewayd/gateway/audit"
)

// ErrOutside is returned when the webhook's host resolves to an address outside the allowed networks.
var ErrOutside = errors.New("the alert webhook resolves outside the allowed internal networks")

// Sender sends alerts to the configured destinations.
type Sender struct {
	syslog   string // a unix datagram socket; "" for none
	webhook  *url.URL
	allowed  []netip.Prefix
	resolver *net.Resolver
	client   *http.Client
	hostname string
	pid      int
}

// New checks the destinations and returns a sender. webhook ("" for none) must be an http(s) URL whose host
// resolves only to addresses inside allowed; it is refused otherwise.
func New(ctx context.Context, syslogSocket, webhook string, allowed []netip.Prefix) (*Sender, error) {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "-"
	}
	s := &Sender{syslog: syslogSocket, allowed: allowed, resolver: net.DefaultResolver, hostname: host, pid: os.Getpid()}
	if webhook == "" {
		return s, nil
	}
	u, err := url.Parse(webhook)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" || u.User != nil {
		return nil, fmt.Errorf("--alert-webhook: %q is not an http(s) URL without credentials", webhook)
	}
	s.webhook = u
	dialer := &net.Dialer{Timeout: 5 * time.Second, Control: func(_, address string, _ syscall.RawConn) error {
		return s.check(address)
	}}
	s.client = &http.Client{Timeout: 10 * time.Second,
		Transport:     &http.Transport{Proxy: nil, DialContext: dialer.DialContext, MaxIdleConns: 1, IdleConnTimeout: time.Minute},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if err := s.resolveInside(ctx); err != nil {
		return nil, fmt.Errorf("--alert-webhook: %w", err)
	}
	return s, nil
}

// check refuses an address ("ip:port") outside the allowed networks.
func (s *Sender) check(address string) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %s", ErrOutside, address)
	}
	ip := ap.Addr().Unmap()
	for _, p := range s.allowed {
		if p.Contains(ip) {
			return nil
		}
	}
	return fmt.Errorf("%w: %s", ErrOutside, ip)
}

// resolveInside resolves the webhook's host and refuses it unless every address is inside the allowed networks.
func (s *Sender) resolveInside(ctx context.Context) error {
	ips, err := s.resolver.LookupNetIP(ctx, "ip", s.webhook.Hostname())
	if err != nil {
		return fmt.Errorf("resolve %s: %w", s.webhook.Hostname(), err)
	}
	if len(ips) == 0 {
		return fmt.Errorf("%s resolves to no address", s.webhook.Hostname())
	}
	for _, ip := range ips {
		if err := s.check(netip.AddrPortFrom(ip.Unmap(), 0).String()); err != nil {
			return err
		}
	}
	return nil
}

// Severities of RFC 5424 by urgency: an emergency is an "alert" (act at once), urgent a warning, routine a
// notice. The facility is 14, "log alert".
func pri(urgency string) int {
	switch urgency {
	case approvals.UrgencyEmergency:
		return 14*8 + 1
	case string(approvals.Urgent):
		return 14*8 + 4
	}
	return 14*8 + 5
}

// Message is an alert as the webhook receives it (JSON) and the syslog message carries it.
type Message struct {
	ID         string    `json:"id"`
	Kind       string    `json:"kind"`
	Urgency    string    `json:"urgency"`
	Subject    string    `json:"subject"`
	QueueCount int       `json:"queue_count"`
	At         time.Time `json:"at"`
}

func messageOf(a approvals.Alert) Message {
	return Message{ID: a.ID, Kind: a.Kind, Urgency: a.Urgency, Subject: a.Subject, QueueCount: a.QueueCount, At: a.CreatedAt}
}

// SyslogLine is the RFC 5424 message of an alert.
func (s *Sender) SyslogLine(a approvals.Alert) string {
	return audit.SyslogMessage(pri(a.Urgency), a.CreatedAt, s.hostname, s.pid, a.Kind, "gatewayd-alert@32473", [][2]string{
		{"id", a.ID}, {"urgency", a.Urgency}, {"subject", a.Subject}, {"queue", strconv.Itoa(a.QueueCount)}},
		a.Urgency+" "+a.Kind+" "+a.Subject+" ("+strconv.Itoa(a.QueueCount)+" waiting)")
}

// Send delivers one alert to every destination; it fails if any destination failed.
func (s *Sender) Send(ctx context.Context, a approvals.Alert) error {
	var errs []error
	if s.syslog != "" {
		errs = append(errs, s.sendSyslog(a))
	}
	if s.webhook != nil {
		errs = append(errs, s.sendWebhook(ctx, a))
	}
	return errors.Join(errs...)
}

func (s *Sender) sendSyslog(a approvals.Alert) error {
	conn, err := net.Dial("unixgram", s.syslog)
	if err != nil {
		return fmt.Errorf("alert syslog %s: %w", s.syslog, err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(s.SyslogLine(a))); err != nil {
		return fmt.Errorf("alert syslog %s: %w", s.syslog, err)
	}
	return nil
}

func (s *Sender) sendWebhook(ctx context.Context, a approvals.Alert) error {
	if err := s.resolveInside(ctx); err != nil {
		return fmt.Errorf("alert webhook: %w", err)
	}
	body, err := json.Marshal(messageOf(a))
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.webhook.String(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("alert webhook: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("alert webhook: status %d", resp.StatusCode)
	}
	return nil
}

// lease is how long a claimed alert is held for one sender before another may send it.
const lease = 30 * time.Second

// Once claims the alerts waiting and sends each; the alerts that reached every destination are marked sent
// together, after the batch (one write, not one per alert); the others, and all of them if that write fails,
// are handed out again when their lease ends (at least once: a sender that dies after sending and before
// marking sends again). It returns how many were sent and marked.
func (s *Sender) Once(ctx context.Context, svc *approvals.Service) (int, error) {
	as, err := svc.ClaimAlerts(ctx, lease)
	if err != nil {
		return 0, err
	}
	var sent []string
	var errs []error
	for _, a := range as {
		if err := s.Send(ctx, a); err != nil {
			errs = append(errs, fmt.Errorf("alert %s: %w", a.ID, err))
			continue
		}
		sent = append(sent, a.ID)
	}
	if err := svc.AlertSent(ctx, sent...); err != nil {
		return 0, errors.Join(append(errs, err)...)
	}
	return len(sent), errors.Join(errs...)
}

// Run sends alerts every interval until ctx ends; report gets each error (to log, without patient data: the
// errors name ids and addresses only).
func (s *Sender) Run(ctx context.Context, svc *approvals.Service, every time.Duration, report func(error)) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if _, err := s.Once(ctx, svc); err != nil && ctx.Err() == nil {
			report(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
