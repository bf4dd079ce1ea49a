package records

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
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

// The one query of a rendering pass, per dialect: the manifest's JSON (a parameter) unnested in order by the
// database, each element looked up in record_entries by primary key (id, version) in a nested loop, so rows
// come out in manifest order as they are found: no sort, which would hold every row (resources included)
// before the first one. The plan is not left to chance: PostgreSQL would hash-join a small manifest against a
// scan of the whole table, so its look-up is a LATERAL subquery with LIMIT 1 (never flattened into a join);
// and eachEntry checks each row's position (m.key, m.ord) anyway. A LEFT JOIN, so that an entry of the
// manifest that is not stored comes back as a row without columns and is refused, never skipped. The two %s
// are the resource and display columns, or NULL when the pass does not open them.
const (
	entriesSQLite = `SELECT m.key, json_extract(m.value, '$.id'), json_extract(m.value, '$.version'), json_extract(m.value, '$.content_hash'),
	e.patient_id, e.content_hash, e.category, e.resource_type, e.effective_at, e.fhir_id, %s, %s
FROM json_each(?) AS m LEFT JOIN record_entries e ON e.id = json_extract(m.value, '$.id') AND e.version = json_extract(m.value, '$.version')`
	entriesPostgres = `SELECT m.ord - 1, m.value ->> 'id', (m.value ->> 'version')::int, m.value ->> 'content_hash',
	e.patient_id, e.content_hash, e.category, e.resource_type, e.effective_at, e.fhir_id, %s, %s
FROM jsonb_array_elements(CAST(? AS jsonb)) WITH ORDINALITY AS m(value, ord) LEFT JOIN LATERAL (
	SELECT * FROM record_entries WHERE id = m.value ->> 'id' AND version = (m.value ->> 'version')::int LIMIT 1) e ON true`
)

// eachEntry streams the manifest's entries BY (id, version), in manifest order, through one query, and calls
// fn for each as its row arrives: nothing of the manifest is held in Go besides its JSON (the signed one as
// approvals stores it, passed through; or m.Entries' references), and each row is dropped once fn returned,
// so memory does not depend on the extract's size. It never re-selects: an entry missing, belonging to
// another patient, or whose content no longer hashes to the manifest's hash fails with ErrManifest. Each
// entry's type, category and date come from its stored row here, so the manifest needs no more than the
// signed (id, version, hash) of each entry. An entry that fails stops the stream where it is; rendering
// buffers its first 64 KB, so a mismatch early in the extract still leaves the response uncommitted. parts
// says which sealed columns are read and opened: a pass without the resource (the Bundle's reference targets)
// checks the stored hash only, and costs no decryption of the content.
//
// The query's connection is held while fn writes to the client (as long as the response takes: the server's
// timeouts bound it); the patient's sealer is fetched before, so that fn never needs a second connection.
func (s *Service) eachEntry(ctx context.Context, m Manifest, parts entryParts, fn func(e *loadedEntry) error) error {
	db := s.db.WithContext(ctx)
	signed := m.signed
	if signed == "" {
		refs := make([]EntryRef, len(m.Entries))
		for i, e := range m.Entries {
			refs[i] = EntryRef{ID: e.ID, Version: e.Version, ContentHash: e.ContentHash}
		}
		b, err := json.Marshal(refs)
		if err != nil {
			return err
		}
		signed = string(b)
	}
	sl, err := s.sealerOf(db, m.PatientID)
	if err != nil {
		return err
	}
	resourceCol, displayCol := "NULL", "NULL"
	if parts&withResource != 0 {
		resourceCol = "e.resource"
	}
	if parts&withDisplay != 0 {
		displayCol = "e.display"
	}
	q := entriesSQLite
	if db.Dialector.Name() == "postgres" {
		q = entriesPostgres
	}
	rs, err := db.Raw(fmt.Sprintf(q, resourceCol, displayCol), signed).Rows()
	if err != nil {
		return fmt.Errorf("load entries: %w", err)
	}
	defer rs.Close()
	var (
		id, want                                       string
		version                                        int
		patientID, contentHash, category, resourceType sql.NullString
		effectiveAt                                    *string
		fhirID, resource, display                      []byte
		le                                             loadedEntry
		sum                                            [sha256.Size]byte
		hexSum                                         [2 * sha256.Size]byte
	)
	for n := int64(0); rs.Next(); n++ {
		var pos int64
		if err := rs.Scan(&pos, &id, &version, &want, &patientID, &contentHash, &category, &resourceType, &effectiveAt, &fhirID,
			&resource, &display); err != nil {
			return fmt.Errorf("load entries: %w", err)
		}
		rid := entryRowID(id, version)
		if pos != n {
			return fmt.Errorf("entry %s: read at position %d of the manifest, expected %d: %w", rid, pos, n, ErrManifest)
		}
		if !patientID.Valid || patientID.String != m.PatientID || contentHash.String != want {
			return fmt.Errorf("entry %s: %w", rid, ErrManifest)
		}
		le = loadedEntry{ManifestEntry: ManifestEntry{ID: id, Version: version, ContentHash: want,
			Category: Category(category.String), ResourceType: resourceType.String}}
		if parts&withResource != 0 {
			if le.resource, err = sl.open("record_entries", "resource", rid, resource); err != nil {
				return err
			}
			sum = sha256.Sum256(le.resource)
			hex.Encode(hexSum[:], sum[:])
			if string(hexSum[:]) != want {
				return fmt.Errorf("entry %s: content hash: %w", rid, ErrManifest)
			}
		}
		fid, err := sl.open("record_entries", "fhir_id", rid, fhirID)
		if err != nil {
			return err
		}
		le.fhirID = string(fid)
		if effectiveAt != nil {
			t, err := time.Parse(DateLayout, *effectiveAt)
			if err != nil {
				return fmt.Errorf("entry %s: stored date: %w", rid, err)
			}
			le.Date = &t
		}
		if parts&withDisplay != 0 {
			d, err := sl.open("record_entries", "display", rid, display)
			if err != nil {
				return err
			}
			le.Display = string(d)
		}
		if err := fn(&le); err != nil {
			return err
		}
	}
	if err := rs.Err(); err != nil {
		return fmt.Errorf("load entries: %w", err)
	}
	return nil
}

// entryParts are the sealed columns of an entry a pass opens besides its FHIR id.
type entryParts int

const (
	withResource entryParts = 1 << iota // the resource, hashed against the manifest
	withDisplay                         // the display, for the printable page
)

// patientFor loads the demographics of the manifest's patient and checks that the identifier asked for is
// one of theirs: among the identifiers their record holds, which are the ones the blind index was built from
// (so no second index look-up).
func (s *Service) patientFor(ctx context.Context, m Manifest, id Identifier) (demographics, error) {
	db := s.db.WithContext(ctx)
	pid := m.PatientID
	var row patientRow
	if err := db.Where("id = ?", pid).Take(&row).Error; err != nil {
		return demographics{}, fmt.Errorf("load patient: %w", err)
	}
	sl, err := s.sealerOf(db, pid)
	if err != nil {
		return demographics{}, err
	}
	plain, err := sl.open("record_patients", "demographics", pid, row.Demographics)
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
