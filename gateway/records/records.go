// Package records keeps patients' clinical records on the internal side of the gateway: what is kept (the
// FHIR types mapped to categories), how it is kept (sealed with AES-256-GCM, patients found through a keyed
// blind index), how FHIR R4 Bundles and Bulk Data NDJSON are imported, and how exactly the entries of an
// approved scope are selected (the manifest) and rendered (FHIR Bundle or printable HTML).
//
// It knows nothing of requests or approvals: callers give it an identifier and a scope, and a manifest to
// render.
package records

import (
	"errors"
	"sort"

	"gorm.io/gorm"

	"gatewayd/gateway/keys"
)

// Category is a kind of clinical data a request can name.
type Category string

// The categories, in the order pages list them.
const (
	Allergies     Category = "allergies"
	Treatments    Category = "treatments"
	Results       Category = "results"
	Conditions    Category = "conditions"
	Procedures    Category = "procedures"
	Immunizations Category = "immunizations"
	Documents     Category = "documents"
	Encounters    Category = "encounters"
)

// Categories lists every category in display order.
var Categories = []Category{Allergies, Treatments, Results, Conditions, Procedures, Immunizations, Documents, Encounters}

// categoryOf maps the FHIR types that are kept to their category. Any other type is not stored at all: the
// best-protected data is the data not stored.
var categoryOf = map[string]Category{
	"AllergyIntolerance":       Allergies,
	"MedicationRequest":        Treatments,
	"MedicationStatement":      Treatments,
	"MedicationAdministration": Treatments,
	"Observation":              Results,
	"DiagnosticReport":         Results,
	"Condition":                Conditions,
	"Procedure":                Procedures,
	"Immunization":             Immunizations,
	"DocumentReference":        Documents,
	"Encounter":                Encounters,
}

// CategoryOf tells the category a FHIR resource type is kept under, and false for types that are not kept.
func CategoryOf(resourceType string) (Category, bool) {
	c, ok := categoryOf[resourceType]
	return c, ok
}

// KeptTypes lists the FHIR types of a category, sorted.
func KeptTypes(c Category) []string {
	var out []string
	for t, cat := range categoryOf {
		if cat == c {
			out = append(out, t)
		}
	}
	sort.Strings(out)
	return out
}

// Valid says whether c is one of Categories.
func (c Category) Valid() bool {
	return categoryRank(c) >= 0
}

func categoryRank(c Category) int {
	for i, k := range Categories {
		if k == c {
			return i
		}
	}
	return -1
}

// ErrNoPatient is returned by Select when no patient has the identifier. Intake-side callers must never let
// a requester learn it.
var ErrNoPatient = errors.New("no patient with this identifier")

// ErrManifest is wrapped when a manifest cannot be rendered as signed (an entry missing, or its content no
// longer hashing to the manifest's hash).
var ErrManifest = errors.New("manifest does not match the stored entries")

// Identifier names a patient the way a request does: system and value.
type Identifier struct {
	System string `json:"system"`
	Value  string `json:"value"`
}

// Service is the records store over one database and the master key.
type Service struct {
	db *gorm.DB
	// legacy seals the patients stored before envelope encryption (no data key of their own).
	legacy  sealer
	blind   []byte
	keys    *keys.Master
	sealers sealerCache
}

// New builds the service. The blind index key and the sealer of patients stored before envelope encryption
// come from the master key's root; every other patient has a data key of its own (sealers.go).
func New(db *gorm.DB, master *keys.Master) (*Service, error) {
	s, err := newSealer(master.Derive(keys.PurposeRecords))
	if err != nil {
		return nil, err
	}
	return &Service{db: db, legacy: s, blind: master.Derive(keys.PurposeBlindIndex), keys: master,
		sealers: sealerCache{m: map[string]sealer{}}}, nil
}
