package approvals

import (
	"context"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"
)

// Records selects the entries a scope covers. The gateway adapts gateway/records to it. Intake code never
// reaches it: only the console side (review, decision) selects a manifest, so the intake cannot learn whether
// a patient exists.
type Records interface {
	// Select returns the entries of the patient named by id that the scope covers today. It returns an error
	// wrapping ErrNoPatient when no patient carries that identifier.
	Select(ctx context.Context, id Identifier, scope Scope) (Manifest, error)
	// Traits returns the identity traits the records' Patient holds (the official name's family and first
	// given name, birth date, gender), "" for what they lack; an error wrapping ErrNoPatient when no patient
	// carries the identifier. Only the console's review and decisions ask it, never the intake.
	Traits(ctx context.Context, id Identifier) (Traits, error)
}

// ErrNoPatient is what a Records implementation wraps when the identifier names nobody.
var ErrNoPatient = errors.New("no patient with this identifier")

// Manifest is the exact list of entries a scope selects.
type Manifest struct {
	// Digest, when the records side fills it, must equal ManifestDigest(Entries); approvals computes its own.
	Digest  string
	Entries []ManifestEntry
}

// ManifestEntry is one entry of a manifest. Display is for the officer's page only: it is health data and is
// never stored by approvals nor signed.
type ManifestEntry struct {
	ID          string   `json:"id"`
	Version     int      `json:"version"`
	ContentHash string   `json:"content_hash"`
	Category    Category `json:"category"`
	Date        string   `json:"date"`
	Display     string   `json:"-"`
}

// Signer runs the WebAuthn assertion ceremony with an officer's key over a challenge approvals chooses. The
// gateway adapts gateway/identity to it.
type Signer interface {
	// BeginSign starts a ceremony for officerID over challenge (webauthn.WithChallenge, user verification
	// required) and returns the options for the browser and the id of the stored ceremony.
	BeginSign(ctx context.Context, officerID string, challenge []byte) (options any, ceremonyID string, err error)
	// FinishSign checks the browser's response against the stored ceremony (consumed once) and returns what
	// was signed and with which key.
	FinishSign(ctx context.Context, ceremonyID, officerID string, response []byte) (SignedAssertion, error)
}

// SignedAssertion is a verified WebAuthn assertion, raw, as needed to re-check it offline.
type SignedAssertion struct {
	CredentialID      []byte
	PublicKey         []byte // COSE_Key
	AuthenticatorData []byte
	ClientDataJSON    []byte
	Signature         []byte
	RPID              string
	Origin            string
	// Challenge is the challenge the client data carries (decoded), which approvals compares with the one it
	// prepared: it trusts no signer to have done so.
	Challenge []byte
	// Commit records the key's use (its sign counter) in tx, the transaction that stores what was signed with
	// its audit row: if that transaction fails, the key's counter does not move either.
	Commit func(tx *gorm.DB) error
}

// Users tells who a user is. The gateway adapts gateway/identity to it.
type Users interface {
	// User returns the user, or an error wrapping ErrNoUser.
	User(ctx context.Context, id string) (User, error)
}

// ErrNoUser is what a Users implementation wraps for an unknown id.
var ErrNoUser = errors.New("no such user")

// User is what approvals needs to know about an account.
type User struct {
	ID             string
	Role           Role
	Name           string
	ProfessionalID string
	// PersonID is the same for every account of one person (one professional id): self-approval and the
	// two-officer rule compare persons. "" is read as the account's own id.
	PersonID string
	Active   bool
}

// person is the person behind an account.
func (u User) person() string {
	if u.PersonID == "" {
		return u.ID
	}
	return u.PersonID
}

// Policy bounds what may be filed and decided. Zero fields take the defaults of DefaultPolicy.
type Policy struct {
	// TwoOfficerCategories need the approvals of two different officers (default none; "documents" is usual).
	TwoOfficerCategories []Category
	// MaxPending is how long a request may wait for a decision before it lapses (default 7 days).
	MaxPending time.Duration
	// DefaultExtractTTL is the extract lifetime when the officer does not choose one (default 24 h).
	DefaultExtractTTL time.Duration
	// MaxExtractTTL bounds the extract lifetime an officer may choose (default 72 h).
	MaxExtractTTL time.Duration
	// FilingLimit is how many requests one requester may file in a rolling 24 h (default 30).
	FilingLimit int
	// SignWindow is how long a prepared decision waits for its signature (default 5 min).
	SignWindow time.Duration
	// EmergencyExtractTTL is the lifetime, default and longest, of an emergency extract (default 2 h).
	EmergencyExtractTTL time.Duration
	// EmergencyReviewWithin is how long a second officer has to confirm or flag an emergency release after
	// it (default 72 h); past it the review is overdue.
	EmergencyReviewWithin time.Duration
}

// DefaultPolicy is the policy when nothing is configured.
var DefaultPolicy = Policy{
	MaxPending:        7 * 24 * time.Hour,
	DefaultExtractTTL: 24 * time.Hour,
	MaxExtractTTL:     72 * time.Hour,
	FilingLimit:       30,
	SignWindow:        5 * time.Minute,

	EmergencyExtractTTL:   DefaultEmergencyExtractTTL,
	EmergencyReviewWithin: DefaultEmergencyReviewWithin,
}

func (p Policy) withDefaults() Policy {
	d := DefaultPolicy
	if p.MaxPending > 0 {
		d.MaxPending = p.MaxPending
	}
	if p.DefaultExtractTTL > 0 {
		d.DefaultExtractTTL = p.DefaultExtractTTL
	}
	if p.MaxExtractTTL > 0 {
		d.MaxExtractTTL = p.MaxExtractTTL
	}
	if p.FilingLimit > 0 {
		d.FilingLimit = p.FilingLimit
	}
	if p.SignWindow > 0 {
		d.SignWindow = p.SignWindow
	}
	if p.EmergencyExtractTTL > 0 {
		d.EmergencyExtractTTL = p.EmergencyExtractTTL
	}
	if p.EmergencyReviewWithin > 0 {
		d.EmergencyReviewWithin = p.EmergencyReviewWithin
	}
	d.TwoOfficerCategories = p.TwoOfficerCategories
	return d
}

// needsTwoOfficers says whether a scope touches a category the policy reserves to two officers.
func (p Policy) needsTwoOfficers(s Scope) bool {
	for _, c := range p.TwoOfficerCategories {
		if s.Has(c) {
			return true
		}
	}
	return false
}

// Deps is what a Service is built from.
type Deps struct {
	DB      *gorm.DB
	Records Records
	// Renderer writes claimed extracts (DeliverExtract); nil refuses every delivery.
	Renderer Renderer
	Signer   Signer
	Users    Users
	Policy   Policy
	// SealKey (32 bytes, keys.PurposeApprovals) encrypts patient identifiers, justifications and canonical
	// decisions at rest.
	SealKey []byte
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Service is the approvals domain.
type Service struct {
	db       *gorm.DB
	records  Records
	renderer Renderer
	signer   Signer
	users    Users
	policy   Policy
	sealer   sealer
	now      func() time.Time
}

// New checks deps and builds the service.
func New(d Deps) (*Service, error) {
	if d.DB == nil || d.Records == nil || d.Signer == nil || d.Users == nil {
		return nil, errors.New("approvals: DB, Records, Signer and Users are required")
	}
	sl, err := newSealer(d.SealKey)
	if err != nil {
		return nil, fmt.Errorf("approvals: %w", err)
	}
	p := d.Policy.withDefaults()
	if p.DefaultExtractTTL > p.MaxExtractTTL {
		return nil, fmt.Errorf("approvals: default extract lifetime %s exceeds the maximum %s", p.DefaultExtractTTL, p.MaxExtractTTL)
	}
	for _, c := range p.TwoOfficerCategories {
		if !knownCategory(c) {
			return nil, fmt.Errorf("approvals: two-officer category %q is unknown", c)
		}
	}
	now := d.Now
	if now == nil {
		now = time.Now
	}
	return &Service{db: d.DB, records: d.Records, renderer: d.Renderer, signer: d.Signer, users: d.Users, policy: p, sealer: sl, now: now}, nil
}

// Policy returns the effective policy (defaults filled).
func (s *Service) Policy() Policy { return s.policy }

// clock returns the current time as stored: UTC, microseconds (both databases keep microseconds, so a value
// read back compares equal to the one written).
func (s *Service) clock() time.Time { return s.now().UTC().Truncate(time.Microsecond) }
