package records

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"iter"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/stdlib"
	"gorm.io/gorm"

	"gatewayd/gateway/store"
)

// Watermark is what every rendered extract carries, given by the caller.
type Watermark struct {
	RequestID      string
	DecisionID     string
	Requester      string
	Purpose        string
	Recipient      string
	Expiry         time.Time
	ManifestDigest string
	// Released is when the extract was released (the approval): an IPS document's date.
	Released time.Time
	// Zone is the hospital's time zone, in which the printable page shows times (nil: UTC). The Bundle keeps
	// UTC.
	Zone *time.Location
}

// loadedEntry is one manifest entry with its stored content, opened.
type loadedEntry struct {
	ManifestEntry
	resource []byte
	fhirID   string
}

// entryChunk is how many entries of the manifest one query fetches. The rows of a chunk are held (sealed)
// until they are rendered, so it bounds what a rendering holds whatever the extract's size; and it makes the
// round trips few (16 for a 2,000-entry extract).
const entryChunk = 128

// The query fetching a chunk of entries by primary key, per dialect; the two %s are the resource and display
// columns (or NULL when the pass does not open them). It gives one row per pair asked, in the chunk's order: a
// LEFT JOIN, so that a pair the records do not hold (or hold for another patient) comes back as a row of NULLs
// in its place. The row's place says which entry it is, so the row carries neither id nor version: its
// sealed columns, opened with the manifest's (id, version) as their associated data, only open if they are
// that entry's (a row in the wrong place fails to open), and its content hash is compared with the signed one.
// (Two columns fewer per row: each column the SQLite driver reads costs it a type look-up, and a TEXT one a
// declared-type look-up too.)
//
// The pairs are parameters, no longer the manifest's JSON unnested and extracted by the database for each
// entry (json_each/jsonb and three extractions per row: the largest cost of a rendering, per a CPU profile).
// Both statements have the same text for every chunk. PostgreSQL gets two arrays, the chunk's ids and
// versions (the statement prepared once per connection), numbered WITH ORDINALITY for the ORDER BY, and a
// LATERAL look-up with LIMIT 1 per pair: without it, the planner hash-joins the pairs against a scan of the
// whole table (EXPLAIN ANALYZE, 3,000 entries: a sequential scan per chunk; with it, one primary-key index scan
// per pair). SQLite gets one JSON object, each id a name and its version the value (entryJSON), walked by
// json_each in the order written; the left table of a LEFT JOIN is SQLite's outer loop, so the rows come in
// that order, and the entries are read by primary key, never scanned, whatever the planner's guesses. Its
// driver prepares every statement again at each execution, and the text parsed is then short, where one
// "(?,?)" per pair in "(id, version) IN (VALUES ...)" made SQLite parse a SELECT per pair (a chunk of 128:
// 0.45 ms of CPU to prepare and bind, 1.15 ms in all; the JSON form 0.03 ms and 0.62 ms). An object, not two
// arrays: the version read as "? ->> m.key" walked the second array from its start for each row (a seventh
// of a chunk's CPU).
const (
	entriesSQLite = `SELECT e.content_hash, e.category, e.resource_type, e.effective_at, e.fhir_id, %s, %s
FROM json_each(?) AS m LEFT JOIN record_entries AS e ON e.id = m.key AND e.version = m.value AND e.patient_id = ?`
	entriesPostgres = `SELECT e.content_hash, e.category, e.resource_type, e.effective_at, e.fhir_id, %s, %s
FROM unnest(CAST($1 AS text[]), CAST($2 AS integer[])) WITH ORDINALITY AS m(id, version, n) LEFT JOIN LATERAL (
	SELECT * FROM record_entries WHERE id = m.id AND version = m.version AND patient_id = $3 LIMIT 1) e ON true
ORDER BY m.n`
)

// storedEntry is one row of a chunk, as read; its buffers are reused from chunk to chunk.
// Its columns are bytes, not strings: a string per column and row was an allocation each (four per entry).
type storedEntry struct {
	stored                                           bool // false: the pair is not stored (a row of NULLs)
	contentHash, category, resourceType, effectiveAt []byte
	hasDate                                          bool // effectiveAt holds a date (the column is not NULL)
	fhirID, resource, display                        []byte
}

// set copies a row's columns into the entry's buffers. A NULL is a nil slice: content_hash is NULL only where
// the LEFT JOIN found no entry, and never empty.
func (r *storedEntry) set(contentHash, category, resourceType, effectiveAt, fhirID, resource, display []byte) {
	r.stored, r.hasDate = contentHash != nil, effectiveAt != nil
	r.contentHash = append(r.contentHash[:0], contentHash...)
	r.category = append(r.category[:0], category...)
	r.resourceType = append(r.resourceType[:0], resourceType...)
	r.effectiveAt = append(r.effectiveAt[:0], effectiveAt...)
	r.fhirID = append(r.fhirID[:0], fhirID...)
	r.resource = append(r.resource[:0], resource...)
	r.display = append(r.display[:0], display...)
}

// eachEntry streams the manifest's entries BY (id, version), in manifest order, and calls fn for each: the
// manifest's references (ManifestOf's, as approvals decoded them once from the signed JSON at the claim; or
// m.Entries) are read entryChunk at a time, each chunk fetched by one query by primary key, and each row is
// dropped once fn returned (fn must not keep e.resource: its buffer is reused), so the rows held do not
// depend on the extract's size (the references do: about 40 bytes an entry, beside approvals' decoded list).
// It never re-selects: an entry missing, belonging to another patient, or whose content no longer hashes to
// the manifest's hash fails with ErrManifest, checked against the SIGNED manifest's (id, version,
// content_hash) for every row, in the manifest's order, before fn sees it. Each entry's type, category and
// date (withDisplay) come from its stored row, so the manifest needs no more than the signed (id, version,
// hash) of each entry. An entry that fails stops the stream where it is; rendering buffers its first 64 KB,
// so a mismatch early in the extract still leaves the response uncommitted. parts says which sealed columns
// are read and opened: a pass without the resource (the IPS sections) checks the stored hash only, and costs
// no decryption of the content.
//
// No connection is held while fn writes to the client: each chunk's rows are read whole before any is
// rendered. The work is a pipeline of three stages, each in its goroutine, working on three chunks at once:
// the fetcher reads a chunk, the opener decrypts and checks the one before (AES-GCM and SHA-256 of every
// entry), and this loop hands the one before that to fn (the rewrite of references, the digest, the socket).
// With two stages, the opening ran in fn's goroutine and queued behind the writing. Three batches go round, so
// at most three chunks are held, whatever the extract's size. (Two fetchers reading alternate chunks on two
// connections were tried: no gain measured on two cores, where the stages already share the CPU with the
// database and the client.)
func (s *Service) eachEntry(ctx context.Context, m Manifest, parts entryParts, fn func(e *loadedEntry) error) error {
	db := s.db.WithContext(ctx)
	sl, err := s.sealerOf(db, m.PatientID)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Every channel can hold all the batches, so only the fetcher ever waits to send (for a free batch, or ctx).
	free, fetched, ready := make(chan *entryBatch, entryBatches), make(chan *entryBatch, entryBatches), make(chan *entryBatch, entryBatches)
	// No more batches than the manifest has chunks, each no larger than the manifest: an extract of 100
	// entries gets one batch of 100 rows, not three of entryChunk. They come from batchPool and go back to it
	// at the end, all of them then in free (but one the fetcher held when it stopped early: the collector's).
	size := max(1, min(entryChunk, m.Len()))
	for range max(1, min(entryBatches, (m.Len()+entryChunk-1)/entryChunk)) {
		free <- getEntryBatch(size)
	}
	defer func() {
		for {
			select {
			case b := <-free:
				putEntryBatch(b)
			default:
				return
			}
		}
	}()
	done := make(chan error, 1)
	go func() {
		done <- s.fetchEntries(db.WithContext(ctx), m, parts, free, fetched)
		close(fetched)
	}()
	go func() {
		for b := range fetched {
			b.open(sl, parts)
			ready <- b
		}
		close(ready)
	}()
	var failed error
	for b := range ready {
		if failed == nil {
			for i := range b.opened[:b.ok] {
				if failed = fn(&b.opened[i]); failed != nil {
					break
				}
			}
			if failed == nil {
				failed = b.err
			}
			if failed != nil {
				cancel() // the fetcher stops; the batches already read drain through ready
			}
		}
		free <- b
	}
	if err := <-done; failed == nil {
		return err
	}
	return failed
}

// entryBatches is how many chunks are in the pipeline at once: one per stage.
const entryBatches = 3

// open opens the batch's rows in order into b.opened, checking each against the signed manifest, and stops
// at the first that fails: b.ok rows are good, and b.err (nil if all are) is the failure of the next.
func (b *entryBatch) open(sl sealer, parts entryParts) {
	b.ok, b.err = 0, nil
	for i, ref := range b.refs {
		if err := b.openRow(sl, parts, i, ref); err != nil {
			b.err = err
			return
		}
		b.ok++
	}
}

func (b *entryBatch) openRow(sl sealer, parts entryParts, i int, ref EntryRef) error {
	rid := entryRowID(ref.ID, ref.Version)
	r, le := &b.rows[i], &b.opened[i]
	if !r.stored {
		return fmt.Errorf("entry %s: not stored for the manifest's patient: %w", rid, ErrManifest)
	}
	if string(r.contentHash) != ref.ContentHash {
		return fmt.Errorf("entry %s: %w", rid, ErrManifest)
	}
	*le = loadedEntry{ManifestEntry: ManifestEntry{ID: ref.ID, Version: ref.Version, ContentHash: ref.ContentHash,
		Category: Category(b.name(r.category)), ResourceType: b.name(r.resourceType)}}
	if parts&withResource != 0 {
		// Opened in place, over the sealed bytes (AES-GCM allows it), so that a chunk is held once, not twice.
		plain, err := sl.openInPlace("record_entries", "resource", rid, r.resource)
		if err != nil {
			return err
		}
		le.resource = plain
		var hexSum [2 * sha256.Size]byte
		sum := sha256.Sum256(plain)
		hex.Encode(hexSum[:], sum[:])
		if string(hexSum[:]) != ref.ContentHash {
			return fmt.Errorf("entry %s: content hash: %w", rid, ErrManifest)
		}
	}
	fid, err := sl.open("record_entries", "fhir_id", rid, r.fhirID)
	if err != nil {
		return err
	}
	le.fhirID = string(fid)
	if parts&withDisplay != 0 {
		if r.hasDate {
			t, err := time.Parse(DateLayout, string(r.effectiveAt))
			if err != nil {
				return fmt.Errorf("entry %s: stored date: %w", rid, err)
			}
			le.Date = &t
		}
		d, err := sl.open("record_entries", "display", rid, r.display)
		if err != nil {
			return err
		}
		le.Display = string(d)
	}
	return nil
}

// entryBatch is a chunk of the manifest, its rows as read and as opened; its buffers are reused from chunk to
// chunk.
type entryBatch struct {
	refs   []EntryRef
	args   []any
	rows   []storedEntry // rows[i] is refs[i]'s
	opened []loadedEntry // opened[i] is rows[i] opened, for i < ok
	ok     int
	err    error             // why rows[ok] did not open, or nil
	names  map[string]string // categories and resource types read, each kept once (name)
}

// maxNames bounds a batch's names: categories are a handful and resource types about 150.
const maxNames = 256

// name returns v as a string, the same string each time v holds the same bytes: an entry's category and type
// take a few values, and a string for each entry was an allocation each.
func (b *entryBatch) name(v []byte) string {
	if s, ok := b.names[string(v)]; ok {
		return s
	}
	s := string(v)
	if len(b.names) < maxNames {
		b.names[s] = s
	}
	return s
}

// batchPool keeps the batches (entryChunk rows each, and the buffers their rows have grown) from one rendering
// to the next: a retrieval of the 87 KB extract allocated them anew, its rows' buffers grown column by column,
// 37 % of the bytes the server allocated under bench-peer's load (PostgreSQL, c = 8, 2 December 2026).
// putEntryBatch zeroes what a batch held in clear before it goes back, so that no entry's content outlives its
// rendering in a pooled buffer. The pool drops its batches at garbage collections.
var batchPool = sync.Pool{New: func() any {
	return &entryBatch{refs: make([]EntryRef, 0, entryChunk), args: make([]any, 0, 2),
		rows: make([]storedEntry, entryChunk), opened: make([]loadedEntry, entryChunk), names: map[string]string{}}
}}

// getEntryBatch is a batch from the pool for chunks of up to size (≤ entryChunk) references: the fetcher fills
// it to its rows' length.
func getEntryBatch(size int) *entryBatch {
	b := batchPool.Get().(*entryBatch)
	b.rows, b.opened = b.rows[:size], b.opened[:size]
	return b
}

// putEntryBatch gives b back to the pool once no stage holds it: the resources opened in place, and every
// reference to what was opened, zeroed first.
func putEntryBatch(b *entryBatch) {
	b.rows, b.opened = b.rows[:cap(b.rows)], b.opened[:cap(b.opened)]
	for i := range b.rows {
		clear(b.rows[i].resource[:cap(b.rows[i].resource)])
		b.rows[i].resource = b.rows[i].resource[:0]
		b.opened[i] = loadedEntry{}
	}
	b.refs, b.ok, b.err = b.refs[:0], 0, nil
	batchPool.Put(b)
}

// fetchEntries reads the manifest's references in order, as many at a time as a batch has rows (entryChunk at
// most), and hands each chunk with its rows to ready, taking the batches to fill from free; it stops when the
// manifest ends or ctx is done.
func (s *Service) fetchEntries(db *gorm.DB, m Manifest, parts entryParts, free <-chan *entryBatch, ready chan<- *entryBatch) error {
	ctx := db.Statement.Context
	resourceCol, displayCol := "NULL", "NULL"
	if parts&withResource != 0 {
		resourceCol = "e.resource"
	}
	if parts&withDisplay != 0 {
		displayCol = "e.display"
	}
	postgres := db.Dialector.Name() == "postgres"
	var b *entryBatch
	send := func() error {
		if b == nil || len(b.refs) == 0 {
			return nil
		}
		if err := b.fetch(db, postgres, m.PatientID, resourceCol, displayCol); err != nil {
			return err
		}
		select {
		case ready <- b:
			b = nil
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for ref := range m.refs() {
		if b == nil {
			select {
			case b = <-free:
				b.refs = b.refs[:0]
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if b.refs = append(b.refs, ref); len(b.refs) == len(b.rows) {
			if err := send(); err != nil {
				return err
			}
		}
	}
	return send()
}

// fetch reads the rows of the batch's references: one query.
func (b *entryBatch) fetch(db *gorm.DB, postgres bool, patientID, resourceCol, displayCol string) error {
	// An id that is not valid UTF-8 can name no stored entry, and neither database would take it as text.
	for _, r := range b.refs {
		if !utf8.ValidString(r.ID) {
			return fmt.Errorf("entry id not UTF-8: %w", ErrManifest)
		}
	}
	if postgres {
		return b.fetchPostgres(db, fmt.Sprintf(entriesPostgres, resourceCol, displayCol), patientID)
	}
	pairs, err := entryJSON(b.refs)
	if err != nil {
		return err
	}
	b.args = append(b.args[:0], pairs, patientID)
	rs, err := db.Raw(fmt.Sprintf(entriesSQLite, resourceCol, displayCol), b.args...).Rows()
	if err != nil {
		return fmt.Errorf("load entries: %w", err)
	}
	defer rs.Close()
	var raw [7]sql.RawBytes
	cols := make([][]byte, len(raw))
	_, err = b.readRows(rs.Next, func() ([][]byte, error) {
		err := rs.Scan(&raw[0], &raw[1], &raw[2], &raw[3], &raw[4], &raw[5], &raw[6])
		for i := range raw {
			cols[i] = raw[i]
		}
		return cols, err
	}, rs.Err)
	return err
}

// readRows copies a chunk query's rows into the batch (next advances to a row, columns gives its seven, end
// says how the rows ended), and checks that there is one row per pair asked.
func (b *entryBatch) readRows(next func() bool, columns func() ([][]byte, error), end func() error) (int, error) {
	n := 0
	for next() {
		if n == len(b.refs) { // one row per pair: never more rows than pairs asked
			return n, fmt.Errorf("load entries: more rows than asked: %w", ErrManifest)
		}
		v, err := columns()
		if err != nil {
			return n, fmt.Errorf("load entries: %w", err)
		}
		if len(v) != 7 {
			return n, fmt.Errorf("load entries: %d columns: %w", len(v), ErrManifest)
		}
		b.rows[n].set(v[0], v[1], v[2], v[3], v[4], v[5], v[6])
		n++
	}
	if err := end(); err != nil {
		return n, fmt.Errorf("load entries: %w", err)
	}
	if n != len(b.refs) {
		return n, fmt.Errorf("load entries: %d rows for %d pairs: %w", n, len(b.refs), ErrManifest)
	}
	return n, nil
}

// fetchPostgres is fetch on PostgreSQL, through pgx itself on a connection of the pool: each row's columns are
// read as the bytes pgx received (RawValues) and copied once into the batch's buffers, where database/sql made a
// string or a slice of each (seven allocations an entry) and converted it again for Scan (the reads were a fifth
// of the server's CPU retrieving a 2,000-entry extract, and the stage the others waited on).
func (b *entryBatch) fetchPostgres(db *gorm.DB, q, patientID string) error {
	ctx := db.Statement.Context
	sqlDB, err := db.DB()
	if err != nil {
		return fmt.Errorf("load entries: %w", err)
	}
	conn, err := sqlDB.Conn(ctx)
	if err != nil {
		return fmt.Errorf("load entries: %w", err)
	}
	defer conn.Close()
	begin, n := time.Now(), 0
	err = conn.Raw(func(dc any) error {
		pc, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("load entries: a %T connection, not pgx's", dc)
		}
		rows, err := pc.Conn().Query(ctx, q, pgPairs{b.refs, false}, pgPairs{b.refs, true}, patientID)
		if err != nil {
			return fmt.Errorf("load entries: %w", err)
		}
		defer rows.Close()
		n, err = b.readRows(rows.Next, func() ([][]byte, error) { return rows.RawValues(), nil }, rows.Err)
		return err
	})
	// Traced as gorm traces its own statements, so that its logger (and the statement counts' test) sees it.
	db.Logger.Trace(ctx, begin, func() (string, int64) { return q, int64(n) }, err)
	return err
}

// pgPairs is a chunk's ids (or versions) as one PostgreSQL array parameter, whatever the chunk's length (gorm
// would expand a slice into a list of parameters; a driver.Valuer it passes on as it is). pgx encodes it as a
// binary array, through pgtype.ArrayGetter: its Value, the array's text literal, made pgx parse the literal
// back into an array to encode it (a tenth of the server's CPU per retrieval on PostgreSQL, per a profile).
// Value stays for anything else that asks (gorm's SQL log).
type pgPairs struct {
	refs     []EntryRef
	versions bool
}

func (p pgPairs) Dimensions() []pgtype.ArrayDimension {
	return []pgtype.ArrayDimension{{Length: int32(len(p.refs)), LowerBound: 1}}
}

func (p pgPairs) Index(i int) any {
	if p.versions {
		return int32(p.refs[i].Version)
	}
	return p.refs[i].ID
}

func (p pgPairs) IndexType() any {
	if p.versions {
		return int32(0)
	}
	return ""
}

func (p pgPairs) Value() (driver.Value, error) {
	b := make([]byte, 0, len(p.refs)*36+2)
	b = append(b, '{')
	for i, r := range p.refs {
		if i > 0 {
			b = append(b, ',')
		}
		if p.versions {
			b = strconv.AppendInt(b, int64(r.Version), 10)
			continue
		}
		// Quoted, with backslash and quote escaped: the array literal's syntax, whatever the id holds.
		b = append(b, '"')
		for _, c := range []byte(r.ID) {
			if c == '"' || c == '\\' {
				b = append(b, '\\')
			}
			b = append(b, c)
		}
		b = append(b, '"')
	}
	return string(append(b, '}')), nil
}

// entryJSON is a chunk's pairs as a JSON object, for SQLite's json_each: each id a name, its version the value;
// one parameter, whatever the chunk's length. An id named twice (two versions of one entry) is kept twice:
// SQLite's json_each walks the members as written. (fetch refuses an id that is not valid UTF-8 first: it
// could not be quoted exactly.)
func entryJSON(refs []EntryRef) (string, error) {
	b := make([]byte, 0, len(refs)*40+2)
	b = append(b, '{')
	for i, r := range refs {
		if i > 0 {
			b = append(b, ',')
		}
		var err error
		if b, err = jsontext.AppendQuote(b, r.ID); err != nil {
			return "", fmt.Errorf("entry id: %w: %w", err, ErrManifest)
		}
		b = append(b, ':')
		b = strconv.AppendInt(b, int64(r.Version), 10)
	}
	return string(append(b, '}')), nil
}

// entryParts are the sealed columns of an entry a pass opens besides its FHIR id.
type entryParts int

const (
	withResource entryParts = 1 << iota // the resource, hashed against the manifest
	withDisplay                         // the display and the date, for the printable page
)

// patientFor loads the demographics of the manifest's patient and checks that the identifier asked for is
// one of theirs: among the identifiers their record holds, which are the ones the blind index was built from
// (so no second index look-up).
func (s *Service) patientFor(ctx context.Context, m Manifest, id Identifier) (demographics, error) {
	db := s.db.WithContext(ctx)
	pid := m.PatientID
	// ManifestOf read the row already (a retrieval's manifest comes from it); otherwise it is read here, with
	// store.QueryRow and the one column, not gorm's statement building and reflection.
	sealed := m.demographics
	if sealed == nil {
		if err := store.QueryRow(ctx, db, "SELECT demographics FROM record_patients WHERE id = ?", pid).Scan(&sealed); err != nil {
			return demographics{}, fmt.Errorf("load patient: %w", err)
		}
	}
	sl, err := s.sealerOf(db, pid)
	if err != nil {
		return demographics{}, err
	}
	plain, err := sl.open("record_patients", "demographics", pid, sealed)
	if err != nil {
		return demographics{}, err
	}
	var d demographics
	if err := json.Unmarshal(plain, &d); err != nil {
		return demographics{}, fmt.Errorf("patient demographics: %w", err)
	}
	want := NormalizeIdentifier(id)
	for _, x := range d.Identifiers {
		if NormalizeIdentifier(x) == want {
			return d, nil
		}
	}
	return demographics{}, fmt.Errorf("the identifier is not the manifest's patient: %w", ErrManifest)
}

// fullURL gives a resource's Bundle.entry.fullUrl: urn:uuid:<id> when the id is a UUID (as in Synthea bundles,
// where the original references use it), else Type/id.
func fullURL(resourceType, id string) string {
	if isUUID(id) {
		return "urn:uuid:" + id
	}
	return resourceType + "/" + id
}

func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// refs yields the manifest's (id, version, content hash) in manifest order: the signed references (ManifestOf),
// or m.Entries.
func (m Manifest) refs() iter.Seq[EntryRef] {
	return func(yield func(EntryRef) bool) {
		if m.list != nil {
			for _, r := range m.list {
				if !yield(r) {
					return
				}
			}
			return
		}
		for _, e := range m.Entries {
			if !yield(EntryRef{ID: e.ID, Version: e.Version, ContentHash: e.ContentHash}) {
				return
			}
		}
	}
}
