package records

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"gorm.io/gorm"

	"gatewayd/gateway/audit"
	"gatewayd/gateway/store"
	"gatewayd/gateway/strictjson"
)

// DefaultMaxFileSize is the default limit on one imported file (256 MiB).
const DefaultMaxFileSize = 256 << 20

// DefaultMaxResourceSize is the default limit on one resource (one Bundle entry, one NDJSON line): 8 MiB,
// far above any resource of Synthea or of usual EHR exports (a DocumentReference with an embedded PDF runs to
// a few MiB). A larger one is refused, read past without being held, so memory stays bounded by it.
const DefaultMaxResourceSize = 8 << 20

// ndjsonBatch is how many NDJSON lines go in one transaction.
const ndjsonBatch = 500

// ImportOptions tune an import run.
type ImportOptions struct {
	MaxFileSize int64 // files above it are refused whole; 0 means DefaultMaxFileSize
	// MaxResourceSize bounds one resource (a Bundle entry, an NDJSON line); 0 means DefaultMaxResourceSize.
	MaxResourceSize int64
	Actor           string         // the audit actor, "cli" by default
	Progress        func(Progress) // called as bytes are read and as files end; may be nil
}

// Progress tells how far a run is.
type Progress struct {
	File       string // the file being read
	Files      int    // files in the run
	FileIndex  int    // 0-based index of File
	Bytes      int64  // bytes read so far, all files
	TotalBytes int64  // bytes of all files
	FileDone   bool   // File has just been finished (imported or failed)
	FileFailed bool
}

// Counts are one category's figures in a run.
type Counts struct {
	Imported  int `json:"imported"`  // new entries
	Unchanged int `json:"unchanged"` // resources already stored with the same content
	Versions  int `json:"versions"`  // new versions of entries already stored
}

// Failure names a bundle (or NDJSON batch) that was rejected whole. Entry is the index in Bundle.entry
// (0-based) or the NDJSON line number (1-based); -1 when the problem is the file or bundle as a whole.
// Position and SHA256 name the file without its name (exports name files after patients): the CLI prints
// File only when asked to.
type Failure struct {
	File     string `json:"file,omitempty"`
	Position int    `json:"position"` // 1-based, in the order the run read the files
	SHA256   string `json:"sha256"`   // hex digest of the whole file ("" when it could not be read)
	Entry    int    `json:"entry"`
	Reason   string `json:"reason"`
}

// Report is the outcome of a run. Its JSON form is what `gatewayd import --json` prints.
type Report struct {
	RunID      string               `json:"run"`    // the audit subject of the run: import:<RunID>
	Stored     int                  `json:"stored"` // bundles and NDJSON batches committed, each with its audit row
	Categories map[Category]*Counts `json:"categories"`
	Skipped    map[string]int       `json:"skipped"` // resources of types that are not kept, by FHIR type
	Failed     []Failure            `json:"failed"`
	Files      int                  `json:"-"`
	Ignored    []string             `json:"-"` // files of a folder walk that are not FHIR data (log.ndjson)
}

func newReport() *Report {
	r := &Report{Categories: map[Category]*Counts{}, Skipped: map[string]int{}, Failed: []Failure{}}
	for _, c := range Categories {
		r.Categories[c] = &Counts{}
	}
	return r
}

func (r *Report) merge(o *Report) {
	for c, n := range o.Categories {
		t := r.Categories[c]
		t.Imported += n.Imported
		t.Unchanged += n.Unchanged
		t.Versions += n.Versions
	}
	for k, n := range o.Skipped {
		r.Skipped[k] += n
	}
}

// Totals sums the categories.
func (r *Report) Totals() Counts {
	var t Counts
	for _, n := range r.Categories {
		t.Imported += n.Imported
		t.Unchanged += n.Unchanged
		t.Versions += n.Versions
	}
	return t
}

// rejection is a reason to refuse a whole bundle or batch.
type rejection struct {
	entry  int
	reason string
	cause  error // the read error behind it, if any (a file growing past the limit)
}

func (e *rejection) Error() string { return e.reason }
func (e *rejection) Unwrap() error { return e.cause }

// rejectRead is reject for a decoding error, keeping it as the cause.
func rejectRead(entry int, cause error, format string, args ...any) error {
	return &rejection{entry: entry, reason: fmt.Sprintf(format, args...), cause: cause}
}

func reject(entry int, format string, args ...any) error {
	return &rejection{entry: entry, reason: fmt.Sprintf(format, args...)}
}

// Import reads every file of paths (folders are walked for *.json Bundles and *.ndjson Bulk Data files) and
// stores what they hold, one transaction per bundle or NDJSON batch, each with its own audit row (import.bundle,
// import.batch: patient ids and counts). A rejected bundle is listed in the report's Failed and the run goes
// on; the returned error is for what stops the whole run (a cancelled context, an unreadable path, an audit
// row that cannot be written). The run is framed by two audit rows: import.started, written before anything
// is stored (if it cannot be written, nothing is imported), and import.run, written last with the totals.
func (s *Service) Import(ctx context.Context, paths []string, opts ImportOptions) (*Report, error) {
	if opts.MaxFileSize <= 0 {
		opts.MaxFileSize = DefaultMaxFileSize
	}
	if opts.MaxResourceSize <= 0 {
		opts.MaxResourceSize = DefaultMaxResourceSize
	}
	if opts.Actor == "" {
		opts.Actor = "cli"
	}
	rep := newReport()
	files, err := collectFiles(paths, rep)
	if err != nil {
		return rep, err
	}
	rep.Files = len(files)
	var total int64
	for _, f := range files {
		total += f.size
	}
	rep.RunID = newID()
	subject := "import:" + rep.RunID
	err = audit.Record(ctx, s.db, audit.Event{Actor: opts.Actor, Action: "import.started", Subject: subject,
		Details: map[string]any{"files": len(files), "bytes": total}})
	if err != nil {
		return rep, fmt.Errorf("import: nothing imported: %w", err)
	}
	run := &importRun{s: s, opts: opts, rep: rep, files: len(files), total: total}
	var runErr error
	for i, f := range files {
		if runErr = ctx.Err(); runErr != nil {
			break
		}
		run.index, run.file = i, f.path
		failedBefore := len(rep.Failed)
		if runErr = run.importFile(ctx, f); runErr != nil {
			break
		}
		run.progress(true, len(rep.Failed) > failedBefore)
	}
	// The run is closed even when interrupted: the bundles committed before stay, each with its own row.
	t := rep.Totals()
	skipped := 0
	for _, n := range rep.Skipped {
		skipped += n
	}
	details := map[string]any{"files": len(files), "stored": rep.Stored, "failed": len(rep.Failed), "imported": t.Imported,
		"unchanged": t.Unchanged, "versions": t.Versions, "skipped": skipped}
	if runErr != nil {
		details["interrupted"] = true
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := audit.Record(actx, s.db, audit.Event{Actor: opts.Actor, Action: "import.run", Subject: subject, Details: details}); err != nil {
		return rep, errors.Join(runErr, fmt.Errorf("import: %w", err))
	}
	if rep.Stored > 0 {
		s.analyze(actx)
	}
	return rep, runErr
}

// analyze refreshes PostgreSQL's statistics of the tables an import fills. Without them (autovacuum off, or
// not yet run) the planner scanned the whole entries table per rendered chunk: a 10,000-entry extract took
// 7.8 s instead of 2.1 s. A failure only costs speed, so it is not the import's error. SQLite plans by index
// without statistics.
func (s *Service) analyze(ctx context.Context) {
	if s.db.Dialector.Name() != "postgres" {
		return
	}
	s.db.WithContext(ctx).Exec("ANALYZE record_entries, record_patient_keys, record_patients")
}

// auditStored appends, inside the transaction that stores a bundle or batch, its audit row: the patients it
// touched (internal ids) and its counts, never a name or a file name.
func (r *importRun) auditStored(tx *gorm.DB, action, subject string, patients []string, local *Report, first, last int) error {
	t := local.Totals()
	skipped := 0
	for _, n := range local.Skipped {
		skipped += n
	}
	details := map[string]any{"run": r.rep.RunID, "file": r.index + 1, "patients": patients, "imported": t.Imported,
		"unchanged": t.Unchanged, "versions": t.Versions, "skipped": skipped}
	if first > 0 {
		details["lines"] = fmt.Sprintf("%d-%d", first, last)
	}
	if err := audit.Append(tx, audit.Event{Actor: r.opts.Actor, Action: action, Subject: subject, Details: details}); err != nil {
		return &auditFailure{err}
	}
	return nil
}

// auditFailure stops the run: a bundle whose audit row cannot be written is not stored, nor will the next be.
type auditFailure struct{ err error }

func (e *auditFailure) Error() string { return "import stopped, audit unavailable: " + e.err.Error() }
func (e *auditFailure) Unwrap() error { return e.err }

type inputFile struct {
	path string
	size int64
}

// collectFiles expands folders and orders the files so that NDJSON Patient files come first: the other NDJSON
// files reference patients by Patient/<id>.
func collectFiles(paths []string, rep *Report) ([]inputFile, error) {
	var out []inputFile
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("import %s: %w", p, err)
		}
		if !st.IsDir() {
			out = append(out, inputFile{p, st.Size()})
			continue
		}
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			name := d.Name()
			if d.IsDir() || !(strings.HasSuffix(name, ".json") || strings.HasSuffix(name, ".ndjson")) {
				return nil
			}
			// Bulk export tools write their own log beside the data; it is not FHIR.
			if name == "log.ndjson" {
				rep.Ignored = append(rep.Ignored, path)
				return nil
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			out = append(out, inputFile{path, info.Size()})
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("import %s: %w", p, err)
		}
	}
	rank := func(f inputFile) int {
		if isNDJSON(f.path) && strings.HasPrefix(filepath.Base(f.path), "Patient.") {
			return 0
		}
		return 1
	}
	sort.SliceStable(out, func(i, j int) bool { return rank(out[i]) < rank(out[j]) })
	return out, nil
}

func isNDJSON(path string) bool { return strings.HasSuffix(path, ".ndjson") }

type importRun struct {
	s        *Service
	opts     ImportOptions
	rep      *Report
	files    int
	index    int
	file     string
	total    int64
	doneSize int64 // bytes of the files before this one
	read     int64 // bytes read of this one
}

func (r *importRun) progress(done, failed bool) {
	if r.opts.Progress == nil {
		return
	}
	r.opts.Progress(Progress{File: r.file, Files: r.files, FileIndex: r.index, Bytes: r.doneSize + r.read,
		TotalBytes: r.total, FileDone: done, FileFailed: failed})
}

func (r *importRun) fail(entry int, reason string) {
	r.rep.Failed = append(r.rep.Failed, Failure{File: r.file, Position: r.index + 1, SHA256: fileSHA256(r.file),
		Entry: entry, Reason: reason})
}

// fileSHA256 names a refused file by its content, read again in a stream (refusals are rare; the file may be
// above the size limit, so it is never held whole).
func fileSHA256(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return ""
	}
	return hex.EncodeToString(h.Sum(nil))
}

// countingReader reports progress as the file is read.
type countingReader struct {
	r    io.Reader
	run  *importRun
	last int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.run.read += int64(n)
	if c.run.read-c.last >= 256<<10 {
		c.last = c.run.read
		c.run.progress(false, false)
	}
	return n, err
}

var (
	errTooLarge         = errors.New("file above the size limit")
	errResourceTooLarge = errors.New("resource above the size limit")
)

// windowReader fails once the reader above it (a JSON decoder and its read-ahead) asks for bytes past limit:
// the import moves limit to the start of each resource plus the largest size allowed, so that one huge
// resource is refused after at most that many bytes were buffered, instead of being held whole.
type windowReader struct {
	r     io.Reader
	read  int64 // bytes handed out so far
	limit int64
}

func (w *windowReader) Read(p []byte) (int, error) {
	if w.read >= w.limit {
		return 0, errResourceTooLarge
	}
	if int64(len(p)) > w.limit-w.read {
		p = p[:w.limit-w.read]
	}
	n, err := w.r.Read(p)
	w.read += int64(n)
	return n, err
}

// limitedReader fails, rather than truncating, when a file turns out larger than the limit while read.
type limitedReader struct {
	r    io.Reader
	left int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.left <= 0 {
		return 0, errTooLarge
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	return n, err
}

func (r *importRun) importFile(ctx context.Context, f inputFile) error {
	defer func() { r.doneSize += f.size; r.read = 0 }()
	limit := r.opts.MaxFileSize
	if f.size > limit {
		r.fail(-1, fmt.Sprintf("file is %d bytes, above the limit of %d bytes (--max-file-size): nothing imported", f.size, limit))
		return nil
	}
	fh, err := os.Open(f.path)
	if err != nil {
		r.fail(-1, fmt.Sprintf("cannot open: %v", errors.Unwrap(err)))
		return nil
	}
	defer fh.Close()
	if isNDJSON(f.path) {
		return r.importNDJSON(ctx, &countingReader{r: &limitedReader{r: fh, left: limit}, run: r})
	}
	// A Bundle is read twice (see importBundle): each pass from the start, the second one counted.
	return r.importBundle(ctx, func(counted bool) (io.Reader, error) {
		if _, err := fh.Seek(0, io.SeekStart); err != nil {
			return nil, err
		}
		var in io.Reader = &limitedReader{r: fh, left: limit}
		if counted {
			in = &countingReader{r: in, run: r}
		}
		return in, nil
	})
}

// storeErr turns an error from a bundle or batch into a failure of the run, and passes on what must stop it.
func (r *importRun) storeErr(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var af *auditFailure
	if errors.As(err, &af) {
		return err
	}
	if errors.Is(err, errTooLarge) {
		r.fail(-1, fmt.Sprintf("file grew above the limit of %d bytes (--max-file-size) while read: nothing imported", r.opts.MaxFileSize))
		return nil
	}
	var rj *rejection
	if errors.As(err, &rj) {
		r.fail(rj.entry, rj.reason)
		return nil
	}
	r.fail(-1, err.Error())
	return nil
}

// pendingEntry is a kept resource on its way to the database.
type pendingEntry struct {
	index        int // entry index or line number, for messages
	patientRef   string
	resourceType string
	resourceID   string
	category     Category
	date         *time.Time
	code         string
	display      string
	resource     []byte // canonical JSON (see Canonical): what the content hash covers and what the Bundle emits
	hash         string
}

// readEntry checks one kept resource and prepares it. raw is the resource's JSON as found in the file.
func readEntry(index int, raw []byte, head *resourceHead) (*pendingEntry, error) {
	cat, _ := CategoryOf(head.ResourceType)
	if head.ID == "" {
		return nil, reject(index, "entry %d (%s): the resource has no id", index, head.ResourceType)
	}
	ref := head.subjectReference()
	if ref == "" {
		return nil, reject(index, "entry %d (%s): no subject or patient reference", index, head.ResourceType)
	}
	date, err := head.effectiveDate()
	if err != nil {
		return nil, reject(index, "entry %d (%s): %v", index, head.ResourceType, err)
	}
	canon, err := Canonical(raw)
	if err != nil {
		return nil, reject(index, "entry %d: %s", index, jsonProblem(err))
	}
	sum := sha256.Sum256(canon)
	code, display := head.codeAndDisplay()
	return &pendingEntry{index: index, patientRef: ref, resourceType: head.ResourceType, resourceID: head.ID,
		category: cat, date: date, code: code, display: display, resource: canon, hash: hex.EncodeToString(sum[:])}, nil
}

// jsonProblem words a decoding error without quoting the data.
func jsonProblem(err error) string {
	var strict *strictjson.Error
	if errors.As(err, &strict) {
		return strict.Error()
	}
	var se *json.SyntaxError
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return "truncated JSON (the line or file ends in the middle)"
	case errors.As(err, &se) && strings.Contains(se.Error(), "unexpected end"):
		return "truncated JSON (the line or file ends in the middle)"
	case errors.As(err, &se):
		return fmt.Sprintf("invalid JSON at byte %d", se.Offset)
	case errors.Is(err, errTooLarge):
		return "file above the size limit"
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("JSON of the wrong shape at %s (not FHIR R4?)", te.Field)
	}
	return "invalid JSON"
}

// shortName keeps a FHIR type or bundle type for a message only when it looks like one (no data leaks into
// the message).
func shortName(s string) string {
	if len(s) > 40 {
		return "(invalid)"
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return "(invalid)"
		}
	}
	return s
}

// newID returns a random internal id.
func newID() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// withTx runs fn in one transaction.
func (s *Service) withTx(ctx context.Context, fn func(tx *gorm.DB) error) error {
	return store.Tx(ctx, s.db, fn)
}
