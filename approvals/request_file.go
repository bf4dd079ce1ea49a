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
	err = store.Tx(ctx, s.db, func(tx *gorm.DB) error {
		var err error
		if row.Emergency, err = s.emergencyGranted(ctx, tx, f.Purpose, f.Patient); err != nil {
			return err
		}
		if store.DialectOf(tx) == store.Postgres {
			// Serializes one requester's filings so that two at once cannot both pass the count below. SQLite's
			// immediate transaction already holds the single write lock.
			if err := tx.Exec("SELECT pg_advisory_xact_lock(727004, hashtext(?))", f.RequesterID).Error; err != nil {
				return err
			}
		}
		if inserted, err := insertUnderLimit(tx, &row, now.Add(-24*time.Hour), s.policy.FilingLimit, filedAlert(row, now)); err != nil {
			return err
		} else if !inserted {
			return ErrRateLimited
		}
		return audit.Append(tx, audit.Event{At: now, Actor: "user:" + f.RequesterID, Action: "request.filed",
			Subject: "request:" + id, Details: map[string]any{"categories": len(f.Categories),
				"purpose": string(f.Purpose), "urgency": string(f.Urgency), "traits": traitCount(f.Traits),
				"emergency": row.Emergency}})
	})
	if err != nil {
		return Request{}, fmt.Errorf("file request: %w", err)
	}
	r, err := s.toRequest(row)
	if err != nil {
		return Request{}, err
	}
	return r, s.fillState(ctx, &r)
}

// insertUnderLimit inserts row, and the alert that announces it, unless its requester has filed limit requests
// since since, and says whether it did: the count and the insert are one statement (INSERT … SELECT … WHERE
// count < limit), one round trip fewer than counting first. Its snapshot is taken after the requester's lock
// (PostgreSQL) or under the write lock (SQLite), so it counts every filing committed before. The columns are
// gorm's own for requestRow: a new field cannot be left out. On PostgreSQL the alert is inserted by the same
// statement, from the request's RETURNING (a data-modifying WITH: one round trip fewer, and no alert unless
// the request was inserted); SQLite's WITH cannot hold an INSERT, so there it is a second statement.
func insertUnderLimit(tx *gorm.DB, row *requestRow, since time.Time, limit int, alert alertRow) (bool, error) {
	stmt := &gorm.Statement{DB: tx}
	if err := stmt.Parse(row); err != nil {
		return false, err
	}
	rv := reflect.ValueOf(row).Elem()
	var cols, marks []string
	var args []any
	for _, f := range stmt.Schema.Fields {
		if !f.Creatable || f.DBName == "" {
			continue
		}
		v, _ := f.ValueOf(tx.Statement.Context, rv)
		cols, marks, args = append(cols, f.DBName), append(marks, "?"), append(args, v)
	}
	q := "INSERT INTO approval_requests (" + strings.Join(cols, ", ") + ") SELECT " + strings.Join(marks, ", ") +
		" WHERE (SELECT COUNT(*) FROM approval_requests WHERE requester_id = ? AND filed_at > ?) < ?"
	args = append(args, row.RequesterID, since, limit)
	postgres := store.DialectOf(tx) == store.Postgres
	if postgres {
		q = "WITH filed AS (" + q + " RETURNING id) " + insertAlert(" FROM filed")
		args = append(args, alert.args()...)
	}
	res := tx.Exec(q, args...)
	if res.Error != nil || res.RowsAffected != 1 {
		return false, res.Error
	}
	if !postgres {
		if err := tx.Exec(insertAlert(""), alert.args()...).Error; err != nil {
			return false, err
		}
	}
	return true, nil
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
