package approvals

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"gorm.io/gorm"

	"gatewayd/gateway/audit"
	"gatewayd/gateway/store"
)

// Bounds of the filing form.
const (
	MaxSystemLen        = 200
	MaxValueLen         = 64
	MinJustificationLen = 10
	MaxJustificationLen = 2000
	// MaxReferenceLen bounds the requester's own reference: a file number, not a text.
	MaxReferenceLen = 40
	// EarliestDate is the earliest date a care period may start: anything before is a typo.
	EarliestDate = "1900-01-01"
)

// The systems of the French INS, whose values get checked (15 characters, NIR key).
const (
	SystemINSNIR     = "urn:oid:1.2.250.1.213.1.4.8"
	SystemINSNIA     = "urn:oid:1.2.250.1.213.1.4.9"
	SystemINSNIRTest = "urn:oid:1.2.250.1.213.1.4.10"
)

// Filing is what a requester submits.
type Filing struct {
	RequesterID   string
	Patient       Identifier
	Categories    []Category
	Period        Period
	Purpose       Purpose
	Justification string
	Urgency       Urgency
	Delivery      RetrieverKind
	// Reference is the requester's own reference (optional): what they file the answer under.
	Reference string
	// Traits are the patient's INS identity traits as the requester holds them (each optional).
	Traits Traits
}

// FieldError names one invalid field and why, as a message key the page or API translates.
type FieldError struct {
	Field string `json:"field"`
	Code  string `json:"code"`
}

// Codes of FieldError.
const (
	CodeRequired = "required"
	CodeTooLong  = "too_long"
	CodeTooShort = "too_short"
	CodeInvalid  = "invalid"
	CodeUnknown  = "unknown"
	CodeOrder    = "order"
	CodeFuture   = "future"
)

// FieldErrors lists every invalid field of a filing. Nothing is stored when FileRequest returns it.
type FieldErrors []FieldError

func (fe FieldErrors) Error() string {
	parts := make([]string, len(fe))
	for i, e := range fe {
		parts[i] = e.Field + ": " + e.Code
	}
	return "invalid request: " + strings.Join(parts, ", ")
}

// Has says whether a field has an error (for the page to mark it).
func (fe FieldErrors) Has(field string) bool {
	return slices.ContainsFunc(fe, func(e FieldError) bool { return e.Field == field })
}

// fieldErrors checks a trimmed patient identifier, for a filing and for a patient's access history alike.
func (id Identifier) fieldErrors() FieldErrors {
	var fe FieldErrors
	add := func(field, code string) { fe = append(fe, FieldError{field, code}) }
	switch sys := id.System; {
	case sys == "":
		add("patient_system", CodeRequired)
	case utf8.RuneCountInString(sys) > MaxSystemLen:
		add("patient_system", CodeTooLong)
	case strings.ContainsFunc(sys, unicode.IsSpace) || !utf8.ValidString(sys):
		add("patient_system", CodeInvalid)
	}
	switch v := id.Value; {
	case v == "":
		add("patient_value", CodeRequired)
	case utf8.RuneCountInString(v) > MaxValueLen:
		add("patient_value", CodeTooLong)
	case strings.ContainsFunc(v, unicode.IsControl) || !utf8.ValidString(v):
		add("patient_value", CodeInvalid)
	case isINS(id.System) && !ValidINS(v):
		add("patient_value", CodeInvalid)
	}
	return fe
}

// normalize trims the free-text fields and sorts the categories; validate then checks the normalized filing.
func (f Filing) normalize() Filing {
	f.Patient.System = strings.TrimSpace(f.Patient.System)
	f.Patient.Value = strings.TrimSpace(f.Patient.Value)
	f.Period.From = strings.TrimSpace(f.Period.From)
	f.Period.To = strings.TrimSpace(f.Period.To)
	f.Justification = normalizeText(f.Justification)
	f.Reference = strings.TrimSpace(f.Reference)
	f.Traits = f.Traits.normalize()
	cs := slices.Clone(f.Categories)
	slices.Sort(cs)
	f.Categories = slices.Compact(cs)
	return f
}

// validate returns every field error of a normalized filing; today is the clock's date (YYYY-MM-DD, UTC).
func (f Filing) validate(today string) FieldErrors {
	var fe FieldErrors
	add := func(field, code string) { fe = append(fe, FieldError{field, code}) }

	fe = append(fe, f.Patient.fieldErrors()...)

	if len(f.Categories) == 0 {
		add("categories", CodeRequired)
	}
	for _, c := range f.Categories {
		if !knownCategory(c) {
			add("categories", CodeUnknown)
			break
		}
	}
	if f.Purpose == PurposeEmergency && !fe.Has("categories") && !InMinimumDataset(f.Categories) {
		add("categories", CodeEmergencyMinimum)
	}

	fromOK, toOK := true, true
	if f.Period.From != "" {
		if fromOK = validDate(f.Period.From); !fromOK {
			add("period_from", CodeInvalid)
		} else if f.Period.From > today {
			add("period_from", CodeFuture)
			fromOK = false
		}
	}
	if f.Period.To != "" {
		if toOK = validDate(f.Period.To); !toOK {
			add("period_to", CodeInvalid)
		}
		// A period ending in the future is allowed: "from X until now" is often written with a late end.
	}
	if fromOK && toOK && f.Period.From != "" && f.Period.To != "" && f.Period.From > f.Period.To {
		add("period_to", CodeOrder)
	}

	switch {
	case f.Purpose == "":
		add("purpose", CodeRequired)
	case !slices.Contains(Purposes, f.Purpose):
		add("purpose", CodeUnknown)
	}
	switch n := utf8.RuneCountInString(f.Justification); {
	case n == 0:
		add("justification", CodeRequired)
	case n < MinJustificationLen:
		add("justification", CodeTooShort)
	case n > MaxJustificationLen:
		add("justification", CodeTooLong)
	case !cleanText(f.Justification):
		add("justification", CodeControl)
	}
	switch r := f.Reference; {
	case utf8.RuneCountInString(r) > MaxReferenceLen:
		add("reference", CodeTooLong)
	case strings.ContainsFunc(r, unicode.IsControl) || !utf8.ValidString(r):
		add("reference", CodeInvalid)
	}
	f.Traits.validate(today, add)
	switch f.Urgency {
	case "":
		add("urgency", CodeRequired)
	case Routine, Urgent:
	default:
		add("urgency", CodeUnknown)
	}
	switch f.Delivery {
	case "":
		add("delivery", CodeRequired)
	case ToRequester, ToStaff:
	default:
		add("delivery", CodeUnknown)
	}
	return fe
}

func knownCategory(c Category) bool { return slices.Contains(Categories, c) }

func validDate(s string) bool {
	t, err := time.Parse(time.DateOnly, s)
	return err == nil && t.Format(time.DateOnly) == s && s >= EarliestDate
}

func isINS(system string) bool {
	return system == SystemINSNIR || system == SystemINSNIA || system == SystemINSNIRTest
}

// ValidINS checks an INS-NIR/NIA value: 13 characters (digits, or 2A/2B for Corsica at positions 6-7) and a
// two-digit key equal to 97 - (number mod 97), Corsica counting as 19 (2A) and 18 (2B).
func ValidINS(v string) bool {
	if len(v) != 15 {
		return false
	}
	body, key := v[:13], v[13:]
	switch body[5:7] {
	case "2A":
		body = body[:5] + "19" + body[7:]
	case "2B":
		body = body[:5] + "18" + body[7:]
	}
	var n, k uint64
	for _, r := range body {
		if r < '0' || r > '9' {
			return false
		}
		n = n*10 + uint64(r-'0')
	}
	for _, r := range key {
		if r < '0' || r > '9' {
			return false
		}
		k = k*10 + uint64(r-'0')
	}
	return k == 97-n%97
}

// FileRequest validates and stores a new pending request. Invalid input returns FieldErrors and stores
// nothing. It never consults the records: whether the patient exists is the officer's business, and a request
// for nobody is filed like any other.
func (s *Service) FileRequest(ctx context.Context, f Filing) (Request, error) {
	now := s.clock()
	f = f.normalize()
	if fe := f.validate(now.Format(time.DateOnly)); len(fe) > 0 {
		return Request{}, fe
	}
	u, err := s.users.User(ctx, f.RequesterID)
	if err != nil {
		return Request{}, fmt.Errorf("file request: %w", err)
	}
	if !u.Active || u.Role != RoleRequester {
		return Request{}, fmt.Errorf("file request: %w", ErrForbidden)
	}
	id := newID()
	patient, err := json.Marshal(f.Patient)
	if err != nil {
		return Request{}, err
	}
	// Traits are sealed like the identifier; none given stays NULL.
	var traits []byte
	if !f.Traits.IsZero() {
		plain, err := json.Marshal(f.Traits)
		if err != nil {
			return Request{}, err
		}
		traits = s.sealer.seal("approval_requests", "traits", id, plain)
	}
	row := requestRow{
		ID: id, RequesterID: f.RequesterID,
		PatientSealed:       s.sealer.seal("approval_requests", "patient", id, patient),
		PatientIndex:        s.sealer.patientIndex(f.Patient),
		JustificationSealed: s.sealer.seal("approval_requests", "justification", id, []byte(f.Justification)),
		ReferenceSealed:     s.sealOptional("approval_requests", "reference", id, f.Reference),
		TraitsSealed:        traits,
		Categories:          joinCategories(f.Categories),
		PeriodFrom:          f.Period.From, PeriodTo: f.Period.To,
		Purpose: string(f.Purpose), Urgency: string(f.Urgency), Delivery: string(f.Delivery),
		Status: string(StatusPending), FiledAt: now, UpdatedAt: now,
	}
	since := now.Add(-24 * time.Hour)
	filed := func() audit.Event {
		return audit.Event{At: now, Actor: "user:" + f.RequesterID, Action: "request.filed",
			Subject: "request:" + id, Details: map[string]any{"categories": len(f.Categories),
				"purpose": string(f.Purpose), "urgency": string(f.Urgency), "traits": traitCount(f.Traits),
				"emergency": row.Emergency}}
	}
	if store.DialectOf(s.db) == store.Postgres {
		// Read before the statement, not in a transaction with it: under READ COMMITTED a read in the
		// transaction sees no more than this one (and only emergency filings read).
		if row.Emergency, err = s.emergencyGranted(ctx, s.db, f.Purpose, f.Patient); err != nil {
			return Request{}, fmt.Errorf("file request: %w", err)
		}
		err = fileInOneStatement(ctx, s.db, &row, since, s.policy.FilingLimit, filedAlert(row, now), filed())
	} else {
		err = store.Tx(ctx, s.db, func(tx *gorm.DB) error {
			var err error
			if row.Emergency, err = s.emergencyGranted(ctx, tx, f.Purpose, f.Patient); err != nil {
				return err
			}
			if inserted, err := insertUnderLimit(tx, &row, since, s.policy.FilingLimit); err != nil {
				return err
			} else if !inserted {
				return ErrRateLimited
			}
			if err := tx.Exec(insertAlert(""), filedAlert(row, now).args()...).Error; err != nil {
				return err
			}
			return audit.Append(tx, filed())
		})
	}
	if err != nil {
		return Request{}, fmt.Errorf("file request: %w", err)
	}
	r, err := s.toRequest(row)
	if err != nil {
		return Request{}, err
	}
	return r, s.fillState(ctx, &r)
}

// requestInsert returns the columns of row's INSERT and their values. The columns are gorm's own for
// requestRow: a new field cannot be left out.
func requestInsert(db *gorm.DB, row *requestRow) (cols []string, args []any, err error) {
	stmt := &gorm.Statement{DB: db}
	if err := stmt.Parse(row); err != nil {
		return nil, nil, err
	}
	rv := reflect.ValueOf(row).Elem()
	for _, f := range stmt.Schema.Fields {
		if !f.Creatable || f.DBName == "" {
			continue
		}
		v, _ := f.ValueOf(db.Statement.Context, rv)
		cols, args = append(cols, f.DBName), append(args, v)
	}
	return cols, args, nil
}

// insertUnderLimit (SQLite) inserts row unless its requester has filed limit requests since since, and says
// whether it did: the count and the insert are one statement (INSERT … SELECT … WHERE count < limit), one round
// trip fewer than counting first. It runs under SQLite's single write lock (the immediate transaction), so it
// counts every filing committed before and none can commit beside it.
func insertUnderLimit(tx *gorm.DB, row *requestRow, since time.Time, limit int) (bool, error) {
	cols, args, err := requestInsert(tx, row)
	if err != nil {
		return false, err
	}
	q := "INSERT INTO approval_requests (" + strings.Join(cols, ", ") + ") SELECT " + marks(len(cols)) +
		" WHERE (SELECT COUNT(*) FROM approval_requests WHERE requester_id = ? AND filed_at > ?) < ?"
	res := tx.Exec(q, append(args, row.RequesterID, since, limit)...)
	return res.Error == nil && res.RowsAffected == 1, res.Error
}

// fileInOneStatement (PostgreSQL) files row in one statement, which commits on its own: the requester's
// filing window moved on condition of the daily limit, the request, the alert that announces it and its audit
// row (data-modifying WITHs, each inserting from the one before: nothing unless the limit let the filing
// pass). One round trip and no BEGIN/COMMIT, where a transaction took six (BEGIN, an advisory lock on the
// requester, the insert under the limit, the audit row, COMMIT). It commits all of it or none (fail closed:
// a refused audit row refuses the filing), and waits for the WAL flush like every commit. Rate limited:
// ErrRateLimited, nothing written.
//
// The limit holds under concurrency without a lock statement: filing_windows holds one row per requester
// with the times of their filings in the last 24 hours, and the upsert's condition (ON CONFLICT DO UPDATE …
// WHERE) is evaluated on the row's latest committed version, with the row locked: a second filing at once
// waits for the first's commit, then counts it (TestFilingLimitWaitsForTheFilingBeforeIt). A count over
// approval_requests in the statement could not: it would read the statement's snapshot, taken before the
// wait, hence the separate lock statement before.
func fileInOneStatement(ctx context.Context, db *gorm.DB, row *requestRow, since time.Time, limit int, alert alertRow, ev audit.Event) error {
	cols, args, err := requestInsert(db, row)
	if err != nil {
		return err
	}
	insertAudit, auditArgs, err := audit.InsertFrom(ev, "filed")
	if err != nil {
		return err
	}
	// The window's times are kept in order, so the count is a binary search (width_bucket: how many are at or
	// before since) and the update a slice and an append; a filing whose time is before the last one's (the
	// clock set back) sorts them again.
	q := `WITH counted AS (INSERT INTO filing_windows AS w (requester_id, filed_at) VALUES (?, ARRAY[?::timestamptz])
			ON CONFLICT (requester_id) DO UPDATE SET filed_at = CASE WHEN w.filed_at[cardinality(w.filed_at)] <= excluded.filed_at[1]
				THEN w.filed_at[width_bucket(?::timestamptz, w.filed_at) + 1:] || excluded.filed_at
				ELSE ARRAY(SELECT t FROM unnest(w.filed_at || excluded.filed_at) AS t WHERE t > ? ORDER BY t) END
			WHERE cardinality(w.filed_at) - width_bucket(?::timestamptz, w.filed_at) < ? RETURNING 1),
		filed AS (INSERT INTO approval_requests (` + strings.Join(cols, ", ") + `) SELECT ` + marks(len(cols)) + ` FROM counted RETURNING 1),
		alerted AS (` + insertAlert(" FROM filed") + `) ` + insertAudit
	all := make([]any, 0, 6+len(args)+5+len(auditArgs))
	all = append(all, row.RequesterID, row.FiledAt, since, since, since, limit)
	all = append(append(append(all, args...), alert.args()...), auditArgs...)
	res := db.WithContext(ctx).Exec(q, all...)
	if res.Error != nil {
		return fmt.Errorf("%w: %w", audit.ErrUnavailable, res.Error)
	}
	if res.RowsAffected != 1 {
		return ErrRateLimited
	}
	audit.Committed(ctx, db)
	return nil
}

// marks returns n comma-separated placeholders.
func marks(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

// sealOptional seals a free text that may be empty: an empty one stays NULL.
func (s *Service) sealOptional(table, column, id, text string) []byte {
	if text == "" {
		return nil
	}
	return s.sealer.seal(table, column, id, []byte(text))
}

// newID returns a random 128-bit id in hex: unguessable, so an id in a URL reveals nothing and cannot be
// enumerated.
func newID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (s *Service) toRequest(r requestRow) (Request, error) {
	p, err := s.sealer.open("approval_requests", "patient", r.ID, r.PatientSealed)
	if err != nil {
		return Request{}, err
	}
	var id Identifier
	if err := json.Unmarshal(p, &id); err != nil {
		return Request{}, fmt.Errorf("request %s: patient: %w", r.ID, err)
	}
	j, err := s.sealer.open("approval_requests", "justification", r.ID, r.JustificationSealed)
	if err != nil {
		return Request{}, err
	}
	var ref []byte
	if len(r.ReferenceSealed) > 0 {
		if ref, err = s.sealer.open("approval_requests", "reference", r.ID, r.ReferenceSealed); err != nil {
			return Request{}, err
		}
	}
	var traits Traits
	if len(r.TraitsSealed) > 0 {
		t, err := s.sealer.open("approval_requests", "traits", r.ID, r.TraitsSealed)
		if err != nil {
			return Request{}, err
		}
		if err := json.Unmarshal(t, &traits); err != nil {
			return Request{}, fmt.Errorf("request %s: traits: %w", r.ID, err)
		}
	}
	return Request{
		ID: r.ID, RequesterID: r.RequesterID, Reference: string(ref), Traits: traits,
		Scope: Scope{Patient: id, Categories: splitCategories(r.Categories),
			Period: Period{From: r.PeriodFrom, To: r.PeriodTo}, Purpose: Purpose(r.Purpose)},
		Justification: string(j), Urgency: Urgency(r.Urgency), Delivery: RetrieverKind(r.Delivery),
		Status: Status(r.Status), FiledAt: r.FiledAt.UTC(), UpdatedAt: r.UpdatedAt.UTC(),
		FirstOfficerID: r.FirstOfficerID, FinalDecisionID: r.FinalDecisionID, Emergency: r.Emergency,
	}, nil
}
