package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"gatewayd/gateway"
	"gatewayd/gateway/audit"
	"gatewayd/gateway/store"
)

func (a *app) serveCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the intake and console listeners (migrates the database first)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return a.serve(ctx)
		},
	}
	cmd.Flags().DurationVar(&a.cfg.DBWait, "db-wait", 60*time.Second, "how long to wait for the database at start, trying again with backoff")
	return cmd
}

func (a *app) serve(ctx context.Context) error {
	garbageCollection()
	stopProfile, err := cpuProfile()
	if err != nil {
		return err
	}
	defer stopProfile()
	writeAllocs, err := allocProfile()
	if err != nil {
		return err
	}
	defer writeAllocs()
	if err := a.cfg.CheckServing(); err != nil {
		return err
	}
	db, master, err := gateway.Start(ctx, &a.cfg, a.log)
	if err != nil {
		return err
	}
	defer store.Close(db)
	srv, err := gateway.New(gateway.Deps{Config: &a.cfg, DB: db, Keys: master, Log: a.log})
	if err != nil {
		return err
	}
	intakeLn, err := net.Listen("tcp", a.cfg.IntakeListen)
	if err != nil {
		return fmt.Errorf("--intake-listen: %w", err)
	}
	consoleLn, err := net.Listen("tcp", a.cfg.ConsoleListen)
	if err != nil {
		intakeLn.Close()
		return fmt.Errorf("--console-listen: %w", err)
	}
	details := map[string]any{"intake": intakeLn.Addr().String(), "console": consoleLn.Addr().String(),
		"database": string(store.DialectOf(db))}
	if err := audit.Record(ctx, db, audit.Event{Actor: "system", Action: "server.start", Subject: "server", Details: details}); err != nil {
		return err
	}
	a.log.Info("serving", "intake", a.cfg.PublicIntakeURL, "console", a.cfg.PublicConsoleURL, "database", store.DialectOf(db))
	fmt.Fprintf(a.stdout, "intake  (remote doctors): %s/\nconsole (internal):       %s/\n", a.cfg.PublicIntakeURL, a.cfg.PublicConsoleURL)
	// Lapse and extract expiry run beside the listeners and stop with them; the jobs' database lock lets
	// several instances run this safely.
	jobsCtx, stopJobs := context.WithCancel(ctx)
	jobsDone := make(chan struct{})
	go func() {
		defer close(jobsDone)
		var wg sync.WaitGroup
		wg.Go(func() { a.runOperatingJobs(jobsCtx, db) })
		wg.Go(func() { srv.RunAlerts(jobsCtx) })
		srv.Approvals().RunJobs(jobsCtx, a.cfg.JobsInterval, a.log)
		wg.Wait()
	}()
	serveErr := srv.Serve(ctx, intakeLn, consoleLn)
	stopJobs()
	<-jobsDone
	a.log.Info("stopped")
	// The context is done by now: record the stop on a fresh one.
	stopCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := audit.Record(stopCtx, db, audit.Event{Actor: "system", Action: "server.stop", Subject: "server"}); err != nil && serveErr == nil {
		serveErr = err
	}
	return serveErr
}

// profileFile creates the file that the environment variable env names, for a profile of the server (code
// addresses, call stacks and sizes, no data the server handled): at start, so that a path that cannot be
// written fails before serving. Nil when env names none.
func profileFile(env string) (*os.File, error) {
	name := os.Getenv(env)
	if name == "" {
		return nil, nil
	}
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", env, err)
	}
	return f, nil
}

// cpuProfile writes the server's CPU profile until it stops, when GATEWAY_CPUPROFILE names a file: how
// `make bench-peer` (BENCH_PEER_PROFILE) keeps a profile of the server beside its figures.
func cpuProfile() (stop func(), err error) {
	f, err := profileFile("GATEWAY_CPUPROFILE")
	if err != nil || f == nil {
		return func() {}, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("GATEWAY_CPUPROFILE: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// allocProfile writes, when the server stops, its allocation profile (every allocation since it started,
// sampled: where, how many, how large), when GATEWAY_ALLOCPROFILE names a file: bench-peer keeps it beside the
// CPU profile, read with `go tool pprof -sample_index=alloc_space -top`.
func allocProfile() (write func(), err error) {
	f, err := profileFile("GATEWAY_ALLOCPROFILE")
	if err != nil || f == nil {
		return func() {}, err
	}
	return func() {
		defer f.Close()
		if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
			fmt.Fprintln(os.Stderr, "GATEWAY_ALLOCPROFILE:", err)
		}
	}, nil
}

// serveGCPercent is the garbage collector's target for the server unless GOGC says otherwise: collect when the
// heap has grown to five times what was live (Go's default is twice). A retrieval streams through small reused
// buffers but allocates per entry, and at the default the collector took 11 to 12 % of the server's CPU under
// load (`make bench-peer`, c = 8); the live heap is tens of megabytes (peak RSS in the same benchmark), so five
// times it stays small for a server. An operator may set GOGC (and GOMEMLIMIT, which bounds it whatever the
// target) in the unit's environment as for any Go program.
const serveGCPercent = 400

func garbageCollection() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(serveGCPercent)
	}
}
