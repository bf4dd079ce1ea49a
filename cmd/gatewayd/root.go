package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/spf13/cobra"

	"gatewayd/gateway"
)

// app is what every subcommand shares: the configuration (the same flags for all) and the logger.
type app struct {
	cfg    gateway.Config
	log    *slog.Logger
	stdout io.Writer
	stderr io.Writer
}

// exitError carries a specific exit status (audit verify exits 1 on a broken chain, for instance).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

func run(args []string, stdout, stderr io.Writer) int {
	a := &app{stdout: stdout, stderr: stderr}
	root := a.rootCommand()
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return 0
	}
	fmt.Fprintln(a.stderr, "gatewayd:", err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 2
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "gatewayd",
		Short:         "Air-gapped request-and-approval gateway for health records",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if err := a.cfg.Load(cmd.Flags()); err != nil {
				return err
			}
			a.log = newLogger(a.cfg.LogFormat, a.stderr)
			return nil
		},
	}
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	a.cfg.RegisterFlags(root.PersistentFlags())
	root.AddCommand(a.serveCommand(), a.migrateCommand(), a.keysCommand(), a.auditCommand(),
		a.importCommand(), a.inviteCommand(), a.usersCommand(), a.receiptCommand(), a.demoSetupCommand(),
		a.backupCommand(), a.restoreCommand())
	return root
}

func newLogger(format string, w io.Writer) *slog.Logger {
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, nil))
	}
	return slog.New(slog.NewTextHandler(w, nil))
}
