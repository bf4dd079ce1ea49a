package approvals

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"gorm.io/gorm"

	"gatewayd/gateway/audit"
)

// RestrictionKind is what a patient restricts (the DMP's rights: blocking a professional, masking a document,
// opposing emergency access).
type RestrictionKind string

const (
	// BlockProfessional: no request from this professional id about the patient can be approved.
	BlockProfessional RestrictionKind = "block_professional"
	// MaskEntry: this entry (every version of it) never enters a manifest.
	MaskEntry RestrictionKind = "mask_entry"
	// MaskCategory: no entry of this category enters a manifest.
	MaskCategory RestrictionKind = "mask_category"
	// OpposeEmergency: an emergency request about the patient is treated like any other (see emergencyOpposed).
	OpposeEmergency RestrictionKind = "oppose_emergency"
)

// RestrictionKinds lists every kind, in display order.
var RestrictionKinds = []RestrictionKind{BlockProfessional, MaskEntry, MaskCategory, OpposeEmergency}

// Bounds of a restriction's free fields.
const (
	MaxRestrictionReferenceLen = 200
	MaxRestrictionTargetLen    = 128
)

// Refusals of restrictions.
var (
	ErrBlocked            = errors.New("the patient has blocked the requesting professional: no approval is possible")
	ErrMasked             = errors.New("an entry of the manifest was masked by the patient since the preparation")
	ErrRestrictionInput   = errors.New("invalid restriction")
	ErrAlreadyRestricted  = errors.New("this restriction is already in force for the patient")
	ErrRestrictionUnknown = errors.New("no restriction in force with this id")
	ErrUnknownEntry       = errors.New("the patient's records hold no entry with this id")
)

// ErrReissueMasked refuses a re-issue whose extract holds an entry masked since its approval: a re-issue
// releases exactly the approved manifest, so preparing again would fail again. A new request gets a new
// manifest, built without the masked entries.
var ErrReissueMasked = errors.New("an entry of the extract's manifest was masked by the patient since its approval: it cannot be re-issued; a new request is needed")

// RestrictionFormat is the version of a restriction's canonical form.
const RestrictionFormat = 1

// Kinds of signed restriction documents.
const (
	restrictionRecord = "patient-restriction"
	restrictionLift   = "patient-restriction-lift"
)

// Restriction is what an officer (or the data-protection officer) signs to record a patient's restriction, or
// to lift one. Its canonical form, version 1, is the output of encoding/json for this struct (fields in this
// order, no spaces, no trailing newline, HTML characters not escaped):
//
//	{"format":1,"kind":"patient-restriction"|"patient-restriction-lift","restriction_id":"...","lifts":""|"<id>",
//	 "patient":{"system":"...","value":"..."},"restriction":"block_professional"|"mask_entry"|"mask_category"|
//	 "oppose_emergency","target":"<professional id, entry id or category>"|"","reference":"...",
//	 "officer_id":"...","issued_at":"YYYY-MM-DDTHH:MM:SSZ","nonce":"<base64url of 32 bytes>",
//	 "audit_anchor":{"seq":N,"hash":"<64 hex>"}}
//
// reference is the patient's written request (its reference in the hospital's mail or file); a lifting
// carries the reference of the request that lifts, and repeats the patient, restriction and target of what it
// lifts. The WebAuthn challenge is nonce || SHA-256(canonical), as for a decision. The canonical form names
// the patient, so it is stored sealed.
type Restriction struct {
	Format        int             `json:"format"`
	Kind          string          `json:"kind"`
	RestrictionID string          `json:"restriction_id"`
	Lifts         string          `json:"lifts"`
	Patient       Identifier      `json:"patient"`
	Restriction   RestrictionKind `json:"restriction"`
	Target        string          `json:"target"`
	Reference     string          `json:"reference"`
	OfficerID     string          `json:"officer_id"`
	IssuedAt      string          `json:"issued_at"`
	Nonce         string          `json:"nonce"`
	AuditAnchor   AuditAnchor     `json:"audit_anchor"`
}

// stamp writes the signed header into a restriction.
func (r *Restriction) stamp(h signedHeader) {
	r.Format, r.RestrictionID, r.IssuedAt, r.Nonce, r.AuditAnchor = RestrictionFormat, h.ID, h.issuedAt(), h.nonceString(), h.Anchor
}

// Canonical returns the exact bytes of the restriction's canonical form.
func (r Restriction) Canonical() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		return nil, fmt.Errorf("canonical restriction: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// parseRestriction reads a stored canonical restriction and checks that it is canonical.
func parseRestriction(b []byte) (Restriction, error) {
	var r Restriction
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return Restriction{}, fmt.Errorf("%w: restriction: %v", ErrReceipt, err)
	}
	again, err := r.Canonical()
	if err != nil || !bytes.Equal(again, b) || r.Format != RestrictionFormat {
		return Restriction{}, fmt.Errorf("%w: restriction not canonical", ErrReceipt)
	}
	return r, nil
}

// RestrictionInput is what the console records on a patient's written request.
type RestrictionInput struct {
	Patient Identifier
	Kind    RestrictionKind
	// Target is the professional id (block), the entry id (mask one entry) or the category (mask a
	// category); "" for an opposition to emergency access.
	Target string
	// Reference is the reference of the patient's written request.
	Reference string
}

// PreparedRestriction is a restriction (or its lifting) ready to be signed.
type PreparedRestriction struct {
	ID          string
	Restriction Restriction
	Canonical   []byte
	Challenge   []byte
	Options     any
	SignBy      time.Time
}

// restrictionRow is one signed restriction document as stored: a recording, or a lifting (Lifts set).
type restrictionRow struct {
	ID                string
	PatientIndex      string
	Kind              string
	Lifts             string
	OfficerID         string
	CanonicalSealed   []byte
	Challenge         []byte
	CeremonyID        string
	PreparedAt        time.Time
	PreparedUntil     time.Time
	CompletedAt       *time.Time
	CredentialID      []byte
	PublicKey         []byte
	AuthenticatorData []byte
	ClientDataJSON    []byte
	Signature         []byte
	RPID              string `gorm:"column:rp_id"`
	Origin            string
	LiftedAt          *time.Time
	LiftedBy          string
}

func (restrictionRow) TableName() string { return "patient_restrictions" }

// inForce selects the recordings in force: signed, and not lifted.
func inForce(db *gorm.DB) *gorm.DB {
	return db.Where("lifts = '' AND completed_at IS NOT NULL AND lifted_at IS NULL")
}

// officerOrDPO is who may record or lift a restriction, print an access history or review an emergency
// release afterwards: an officer, or the data-protection officer (DESIGN.md's roles).
func (s *Service) officerOrDPO(ctx context.Context, id string) (User, error) {
	u, err := s.users.User(ctx, id)
	if err != nil {
		return User{}, fmt.Errorf("user %s: %w", id, err)
	}
	if !u.Active || (u.Role != RoleOfficer && u.Role != RoleDPO) {
		return User{}, fmt.Errorf("user %s: %w", id, ErrForbidden)
	}
	return u, nil
}

// checkRestrictionInput normalises and checks what a restriction names.
func (s *Service) checkRestrictionInput(ctx context.Context, in RestrictionInput) (RestrictionInput, error) {
	bad := func(field string) error { return fmt.Errorf("%w: %s", ErrRestrictionInput, field) }
	in.Patient = Identifier{System: strings.TrimSpace(in.Patient.System), Value: strings.TrimSpace(in.Patient.Value)}
	if in.Patient.System == "" || in.Patient.Value == "" || !cleanText(in.Patient.System) || !cleanText(in.Patient.Value) ||
		len(in.Patient.System) > 256 || len(in.Patient.Value) > 256 {
		return in, bad("patient")
	}
	in.Reference = normalizeText(in.Reference)
	if in.Reference == "" || !cleanText(in.Reference) || utf8.RuneCountInString(in.Reference) > MaxRestrictionReferenceLen {
		return in, bad("reference")
	}
	in.Target = strings.TrimSpace(in.Target)
	if !cleanText(in.Target) || utf8.RuneCountInString(in.Target) > MaxRestrictionTargetLen {
		return in, bad("target")
	}
	switch in.Kind {
	case OpposeEmergency:
		if in.Target != "" {
			return in, bad("target")
		}
	case BlockProfessional:
		if in.Target == "" {
			return in, bad("target")
		}
	case MaskCategory:
		if !knownCategory(Category(in.Target)) {
			return in, bad("target")
		}
	case MaskEntry:
		if in.Target == "" {
			return in, bad("target")
		}
		// A mistyped entry id would mask nothing and say it did: the entry must be one of the patient's.
		m, err := s.records.Select(ctx, in.Patient, Scope{Patient: in.Patient, Categories: Categories})
		if err != nil && !errors.Is(err, ErrNoPatient) {
			return in, fmt.Errorf("restriction: entries: %w", err)
		}
		if !slices.ContainsFunc(m.Entries, func(e ManifestEntry) bool { return e.ID == in.Target }) {
			return in, ErrUnknownEntry
		}
	default:
		return in, bad("kind")
	}
	return in, nil
}

// PrepareRestriction checks a restriction the patient asked for in writing, builds its canonical form and
// starts the signing ceremony over nonce || SHA-256(canonical). Nothing is in force until
// CompleteRestriction.
func (s *Service) PrepareRestriction(ctx context.Context, officerID string, in RestrictionInput) (PreparedRestriction, error) {
	if _, err := s.officerOrDPO(ctx, officerID); err != nil {
		return PreparedRestriction{}, err
	}
	in, err := s.checkRestrictionInput(ctx, in)
	if err != nil {
		return PreparedRestriction{}, err
	}
	index := s.sealer.patientIndex(in.Patient)
	active, err := s.restrictionsInForce(ctx, s.db, index)
	if err != nil {
		return PreparedRestriction{}, err
	}
	if slices.ContainsFunc(active, func(r Restriction) bool { return r.Restriction == in.Kind && r.Target == in.Target }) {
		return PreparedRestriction{}, ErrAlreadyRestricted
	}
	r := Restriction{Kind: restrictionRecord, Patient: in.Patient, Restriction: in.Kind, Target: in.Target,
		Reference: in.Reference, OfficerID: officerID}
	return s.prepareRestrictionRow(ctx, officerID, index, r, "restriction.prepared")
}

// PrepareLift prepares the lifting of a restriction in force, on the patient's written request (reference).
func (s *Service) PrepareLift(ctx context.Context, officerID, restrictionID, reference string) (PreparedRestriction, error) {
	if _, err := s.officerOrDPO(ctx, officerID); err != nil {
		return PreparedRestriction{}, err
	}
	reference = normalizeText(reference)
	if reference == "" || !cleanText(reference) || utf8.RuneCountInString(reference) > MaxRestrictionReferenceLen {
		return PreparedRestriction{}, fmt.Errorf("%w: reference", ErrRestrictionInput)
	}
	var row restrictionRow
	err := inForce(s.db.WithContext(ctx)).Where("id = ?", restrictionID).Take(&row).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return PreparedRestriction{}, fmt.Errorf("restriction %s: %w", restrictionID, ErrRestrictionUnknown)
	}
	if err != nil {
		return PreparedRestriction{}, err
	}
	was, err := s.openRestriction(row)
	if err != nil {
		return PreparedRestriction{}, err
	}
	r := Restriction{Kind: restrictionLift, Lifts: row.ID, Patient: was.Patient, Restriction: was.Restriction,
		Target: was.Target, Reference: reference, OfficerID: officerID}
	return s.prepareRestrictionRow(ctx, officerID, row.PatientIndex, r, "restriction.lift_prepared")
}

// prepareRestrictionRow stamps, seals and stores a restriction document through the one signing pipeline.
func (s *Service) prepareRestrictionRow(ctx context.Context, officerID, index string, r Restriction, action string) (PreparedRestriction, error) {
	h, err := s.newSignedHeader(ctx)
	if err != nil {
		return PreparedRestriction{}, err
	}
	r.stamp(h)
	canonical, err := r.Canonical()
	if err != nil {
		return PreparedRestriction{}, err
	}
	sp, err := s.prepareSigned(ctx, officerID, h, canonical,
		func(tx *gorm.DB, challenge []byte, ceremonyID string, signBy time.Time) (audit.Event, error) {
			row := restrictionRow{ID: h.ID, PatientIndex: index, Kind: string(r.Restriction), Lifts: r.Lifts,
				OfficerID: officerID, CanonicalSealed: s.sealer.seal("patient_restrictions", "canonical", h.ID, canonical),
				Challenge: challenge, CeremonyID: ceremonyID, PreparedAt: h.At, PreparedUntil: signBy}
			if err := tx.Create(&row).Error; err != nil {
				return audit.Event{}, err
			}
			details := map[string]any{"kind": string(r.Restriction)}
			if r.Lifts != "" {
				details["lifts"] = r.Lifts
			}
			return audit.Event{Action: action, Subject: "restriction:" + h.ID, Details: details}, nil
		})
	if err != nil {
		return PreparedRestriction{}, err
	}
	return PreparedRestriction{ID: h.ID, Restriction: r, Canonical: canonical, Challenge: sp.Challenge,
		Options: sp.Options, SignBy: sp.SignBy}, nil
}

func (s *Service) openRestriction(row restrictionRow) (Restriction, error) {
	c, err := s.sealer.open("patient_restrictions", "canonical", row.ID, row.CanonicalSealed)
	if err != nil {
		return Restriction{}, err
	}
	return parseRestriction(c)
}

// restrictionsInForce returns the patient's restrictions in force (by blind index), read in db: the
// transaction that enforces them, when there is one.
func (s *Service) restrictionsInForce(ctx context.Context, db *gorm.DB, patientIndex string) ([]Restriction, error) {
	var rows []restrictionRow
	if err := inForce(db.WithContext(ctx)).Where("patient_index = ?", patientIndex).Order("completed_at, id").
		Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("restrictions: %w", err)
	}
	out := make([]Restriction, 0, len(rows))
	for _, row := range rows {
		r, err := s.openRestriction(row)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}
