// Package gateway is the HTTP face of gatewayd and its wiring: configuration, the two listeners (intake and
// console) with disjoint route tables, middleware, error pages, and one file per use case.
package gateway

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"gorm.io/gorm"

	"gatewayd/approvals"
	"gatewayd/gateway/alerts"
	"gatewayd/gateway/identity"
	"gatewayd/gateway/keys"
	"gatewayd/gateway/records"
	"gatewayd/gateway/store"
	"gatewayd/templates"
)

// Listener names, as they appear in logs, audit rows and pages.
const (
	Intake  = "intake"
	Console = "console"
)

// Deps is what a Server is built from.
type Deps struct {
	Config *Config
	DB     *gorm.DB
	Keys   *keys.Master
	Log    *slog.Logger
	Now    func() time.Time // nil means time.Now
	// TrustAnchors overrides --attestation-roots (tests build their own vendor CA).
	TrustAnchors *identity.TrustAnchors
}

// Server holds the two listeners' route tables and what their handlers need.
type Server struct {
	cfg     *Config
	db      *gorm.DB
	log     *slog.Logger
	intake  *echo.Echo
	console *echo.Echo
	h       *handler
	alerts  *alerts.Sender
}

// handler is the receiver of every HTTP handler; its fields are their dependencies.
type handler struct {
	cfg   *Config
	db    *gorm.DB
	keys  *keys.Master
	pages *templates.Renderer
	log   *slog.Logger
	now   func() time.Time
	id    *identity.Service
	// csrfKey signs CSRF tokens; derived from the master key so tokens survive a restart and never sit in
	// the database.
	csrfKey []byte
	// approvals is the request life cycle; records is used on the console only (the review's manifest and the
	// extracts' rendering go through approvals): no intake handler touches it.
	approvals *approvals.Service
	records   *records.Service
	// metrics serves /metrics (a Prometheus registry built once).
	metrics echo.HandlerFunc
	// retrievals holds one token per extract streaming now (retrievalSlots); retrievalWait is how long a
	// retrieval waits for one.
	retrievals    chan struct{}
	retrievalWait time.Duration
}

// New builds both listeners and their routes. It opens nothing: Serve does.
func New(d Deps) (*Server, error) {
	pages, err := templates.New()
	if err != nil {
		return nil, fmt.Errorf("load templates: %w", err)
	}
	now := d.Now
	if now == nil {
		now = time.Now
	}
	master := d.Keys
	if master == nil {
		// Tests that bring no key file get a random one for this server's life.
		b := make([]byte, 32)
		rand.Read(b)
		if master, err = keys.FromBytes(b); err != nil {
			return nil, err
		}
	}
	// Start bound the key file already; tests that build a server directly get it bound here (idempotent).
	if err := master.Bind(context.Background(), d.DB); err != nil {
		return nil, err
	}
	csrfKey := master.Derive(keys.PurposeSessions)
	id, err := newIdentity(d, now, master.Derive(keys.PurposeSignIns))
	if err != nil {
		return nil, err
	}
	rec, err := records.New(d.DB, master)
	if err != nil {
		return nil, fmt.Errorf("records: %w", err)
	}
	appr, err := approvals.New(approvals.Deps{DB: d.DB, Records: recordsAdapter{rec}, Renderer: recordsRenderer{rec, d.Config.TimeZone}, Signer: signerAdapter{id},
		Users: usersAdapter{id}, Policy: d.Config.Policy(), SealKey: master.Derive(keys.PurposeApprovals), Now: now})
	if err != nil {
		return nil, err
	}
	// The webhook's host is resolved against the internal networks now: a wrong one stops the start.
	actx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	snd, err := alerts.New(actx, d.Config.AlertSyslog, d.Config.AlertWebhook, d.Config.ConsoleAllow)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg: d.Config, db: d.DB, log: d.Log, alerts: snd,
		h: &handler{cfg: d.Config, db: d.DB, keys: master, pages: pages, log: d.Log, now: now, id: id,
			retrievals: make(chan struct{}, retrievalSlots(d.DB)), retrievalWait: retrievalQueueWait,
			csrfKey: csrfKey, approvals: appr, records: rec},
	}
	s.h.metrics = s.h.newMetricsHandler()
	s.intake = s.newEcho(Intake)
	s.console = s.newEcho(Console)
	s.routes()
	return s, nil
}

// newIdentity builds the identity service: one relying party per listener, on the public origins.
func newIdentity(d Deps, now func() time.Time, signInKey []byte) (*identity.Service, error) {
	anchors := d.TrustAnchors
	if anchors == nil && d.Config.AttestationRoots != "" {
		var err error
		if anchors, err = identity.LoadTrustAnchors(d.Config.AttestationRoots); err != nil {
			return nil, fmt.Errorf("--attestation-roots: %w", err)
		}
	}
	return identity.New(identity.Config{DB: d.DB, Now: now,
		Origins:      map[string]string{Intake: d.Config.PublicIntakeURL, Console: d.Config.PublicConsoleURL},
		TrustAnchors: anchors, DevAllowSoftwareKeys: d.Config.DevAllowSoftwareKeys,
		IdleConsole: d.Config.SessionIdleConsole, IdleIntake: d.Config.SessionIdleIntake,
		SessionMax: d.Config.SessionMax, InvitationTTL: d.Config.InvitationTTL, SignInKey: signInKey})
}

// RunAlerts sends the alerts the domain writes (queue, emergency, overdue reviews) to the local syslog and the
// internal webhook, every second until ctx ends. Without either configured, alerts are marked sent and go
// nowhere. Several instances may run it: each alert is claimed by one at a time.
func (s *Server) RunAlerts(ctx context.Context) {
	s.alerts.Run(ctx, s.h.approvals, time.Second, func(err error) { s.log.Error("alerts", "error", err) })
}

// Identity is the identity service the server uses (tests and the CLI share it).
func (s *Server) Identity() *identity.Service { return s.h.id }

// Approvals is the approvals service the server uses (serve runs its jobs; tests export receipts).
func (s *Server) Approvals() *approvals.Service { return s.h.approvals }

// Records is the records service the server uses (tests import bundles through it).
func (s *Server) Records() *records.Service { return s.h.records }

// Intake is the intake listener's handler (tests drive it directly).
func (s *Server) Intake() http.Handler { return s.intake }

// Console is the console listener's handler.
func (s *Server) Console() http.Handler { return s.console }

// Serve answers on both listeners until ctx is done, then shuts both down gracefully.
func (s *Server) Serve(ctx context.Context, intakeLn, consoleLn net.Listener) error {
	servers := []*http.Server{s.httpServer(s.intake), s.httpServer(s.console)}
	listeners := []net.Listener{intakeLn, consoleLn}
	errc := make(chan error, 2)
	for i, srv := range servers {
		go func() {
			var err error
			if s.cfg.TLS() {
				err = srv.ServeTLS(listeners[i], s.cfg.TLSCert, s.cfg.TLSKey)
			} else {
				err = srv.Serve(listeners[i])
			}
			if errors.Is(err, http.ErrServerClosed) {
				err = nil
			}
			errc <- err
		}()
	}
	var firstErr error
	select {
	case <-ctx.Done():
	case firstErr = <-errc:
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	for _, srv := range servers {
		if err := srv.Shutdown(shutCtx); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}

func (s *Server) httpServer(e *echo.Echo) *http.Server {
	return &http.Server{
		Handler:           e,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
}

// Start opens the database, migrates it, checks the key file against it, applies a restore if the database is
// a restored copy, and audits the start. The caller serves, then calls Stop.
func Start(ctx context.Context, cfg *Config, log *slog.Logger) (*gorm.DB, *keys.Master, error) {
	master, err := keys.Load(cfg.KeyFile)
	if err != nil {
		return nil, nil, err
	}
	db, err := openWaiting(ctx, cfg, log)
	if err != nil {
		return nil, nil, err
	}
	applied, err := Migrate(ctx, db, "system")
	if err != nil {
		store.Close(db)
		return nil, nil, err
	}
	for _, m := range applied {
		log.Info("migration applied", "version", m.Version, "name", m.Name)
	}
	if err := CheckKey(ctx, db, master, cfg.KeyFile); err != nil {
		store.Close(db)
		return nil, nil, err
	}
	// A database restored from a backup carries its marker: one time stays one time (ApplyRestore).
	restored, err := ApplyRestore(ctx, db, time.Now(), false)
	if err != nil {
		store.Close(db)
		return nil, nil, err
	}
	if restored.Applied {
		log.Warn("database restored from a backup: ready extracts invalidated", "backup", restored.Backup,
			"restore_epoch", restored.Epoch, "invalidated", len(restored.Invalidated))
	}
	return db, master, nil
}

// openWaiting opens the database, trying again with a growing pause (a quarter second, doubling up to five
// seconds) until cfg.DBWait has passed: a gateway started before its PostgreSQL (a reboot, a failover) comes
// up when the database does. Each failed try is logged, without the URL's password.
func openWaiting(ctx context.Context, cfg *Config, log *slog.Logger) (*gorm.DB, error) {
	deadline := time.Now().Add(cfg.DBWait)
	pause := 250 * time.Millisecond
	for try := 1; ; try++ {
		db, err := store.Open(ctx, cfg.DB)
		if err == nil || time.Now().Add(pause).After(deadline) {
			return db, err
		}
		log.Warn("database unreachable, trying again", "try", try, "in", pause, "error", err)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(pause):
		}
		pause = min(2*pause, 5*time.Second)
	}
}
