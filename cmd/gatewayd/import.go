package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"text/tabwriter"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"gatewayd/gateway"
	"gatewayd/gateway/records"
	"gatewayd/gateway/store"
)

func (a *app) importCommand() *cobra.Command {
	var asJSON, showNames bool
	cmd := &cobra.Command{
		Use:   "import [--json] PATH...",
		Short: "Import FHIR R4 Bundles (.json) and Bulk Data NDJSON (.ndjson) files or folders into the records",
		Long: `Import FHIR R4 Bundles (transaction, batch, collection) and FHIR Bulk Data NDJSON files, or folders of them.
Each bundle (each batch of NDJSON lines) is stored in one transaction: a bad one is refused whole and named,
the others go on; the exit status is 1 if any was refused. Resource types that are not kept are counted as
skipped. With --json, stdout holds exactly one JSON object: the report.

Refused files are named by their position in the run and the start of their SHA-256, never by their name
(exports name files after patients, and stdout often ends in a journal); --show-file-names adds the names.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, paths []string) error {
			ctx := cmd.Context()
			db, master, err := gateway.Start(ctx, &a.cfg, a.log)
			if err != nil {
				return err
			}
			defer store.Close(db)
			svc, err := records.New(db, master)
			if err != nil {
				return err
			}
			progress := a.importProgress()
			rep, err := svc.Import(ctx, paths, records.ImportOptions{MaxFileSize: a.cfg.MaxFileSize,
				MaxResourceSize: a.cfg.MaxResourceSize, Actor: "cli", Progress: progress.update})
			progress.finish()
			if err != nil {
				return err
			}
			if !showNames {
				for i := range rep.Failed {
					rep.Failed[i].File = ""
				}
			}
			if asJSON {
				enc := json.NewEncoder(a.stdout)
				if err := enc.Encode(rep); err != nil {
					return err
				}
			} else {
				printImportSummary(a.stdout, rep)
			}
			if len(rep.Failed) > 0 {
				return &exitError{code: 1, err: fmt.Errorf("import: %d bundle(s) or batch(es) refused, the rest imported", len(rep.Failed))}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as one JSON object on stdout")
	cmd.Flags().BoolVar(&showNames, "show-file-names", false, "name refused files by path too (file names often hold patients' names)")
	return cmd
}

// importProgress shows a progress bar when stderr is a terminal, and plain lines, one per file, otherwise.
type importProgress struct {
	stderr io.Writer
	tty    bool
	bar    *progressbar.ProgressBar
}

func (a *app) importProgress() *importProgress {
	p := &importProgress{stderr: a.stderr}
	if f, ok := a.stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.tty = true
	}
	return p
}

func (p *importProgress) update(pr records.Progress) {
	if !p.tty {
		if pr.FileDone {
			// No file name: exports name files after patients, and stderr often ends in a journal. The summary
			// on stdout names the refused files.
			state := "ok"
			if pr.FileFailed {
				state = "REFUSED (see the summary)"
			}
			fmt.Fprintf(p.stderr, "import: file %d/%d: %s (%d of %d bytes read)\n", pr.FileIndex+1, pr.Files, state, pr.Bytes, pr.TotalBytes)
		}
		return
	}
	if p.bar == nil {
		p.bar = progressbar.NewOptions64(pr.TotalBytes, progressbar.OptionSetWriter(p.stderr), progressbar.OptionShowBytes(true),
			progressbar.OptionSetDescription("import"), progressbar.OptionSetWidth(30), progressbar.OptionClearOnFinish())
	}
	p.bar.Describe(fmt.Sprintf("import [%d/%d]", pr.FileIndex+1, pr.Files))
	p.bar.Set64(pr.Bytes)
}

func (p *importProgress) finish() {
	if p.bar != nil {
		p.bar.Finish()
	}
}

func printImportSummary(w io.Writer, rep *records.Report) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "category\timported\tunchanged\tnew versions\t")
	for _, c := range records.Categories {
		n := rep.Categories[c]
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t\n", c, n.Imported, n.Unchanged, n.Versions)
	}
	tw.Flush()
	if len(rep.Skipped) > 0 {
		types := make([]string, 0, len(rep.Skipped))
		for t := range rep.Skipped {
			types = append(types, t)
		}
		sort.Strings(types)
		fmt.Fprint(w, "skipped (types not kept):")
		for _, t := range types {
			fmt.Fprintf(w, " %s %d", t, rep.Skipped[t])
		}
		fmt.Fprintln(w)
	}
	for _, f := range rep.Ignored {
		fmt.Fprintf(w, "ignored (not FHIR data): %s\n", f)
	}
	fmt.Fprintf(w, "%d file(s) read, %d refused\n", rep.Files, len(rep.Failed))
	for _, f := range rep.Failed {
		where := "whole file"
		if f.Entry >= 0 {
			where = fmt.Sprintf("entry %d", f.Entry)
		}
		name := fmt.Sprintf("file %d (sha256 %.12s)", f.Position, f.SHA256)
		if f.File != "" {
			name += " " + f.File
		}
		fmt.Fprintf(w, "REFUSED %s (%s): %s\n", name, where, f.Reason)
	}
}
