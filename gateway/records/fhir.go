package records

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"gatewayd/gateway/strictjson"
)

// reference is a FHIR Reference, as far as import needs it.
type reference struct {
	Reference string `json:"reference"`
	Display   string `json:"display"`
}

type period struct {
	Start *string `json:"start"`
}

type coding struct {
	System  string `json:"system"`
	Code    string `json:"code"`
	Display string `json:"display"`
}

type concept struct {
	Coding []coding `json:"coding"`
	Text   string   `json:"text"`
}

// resourceHead is what import reads of a kept resource: its type and id, whom it is about, its dates and its
// code. Unknown fields are skipped by the decoder.
type resourceHead struct {
	ResourceType string     `json:"resourceType"`
	ID           string     `json:"id"`
	Subject      *reference `json:"subject"`
	Patient      *reference `json:"patient"`

	EffectiveDateTime  *string `json:"effectiveDateTime"`
	EffectiveInstant   *string `json:"effectiveInstant"`
	EffectivePeriod    *period `json:"effectivePeriod"`
	Issued             *string `json:"issued"`
	OnsetDateTime      *string `json:"onsetDateTime"`
	RecordedDate       *string `json:"recordedDate"`
	Recorded           *string `json:"recorded"`
	AuthoredOn         *string `json:"authoredOn"`
	OccurrenceDateTime *string `json:"occurrenceDateTime"`
	PerformedDateTime  *string `json:"performedDateTime"`
	PerformedPeriod    *period `json:"performedPeriod"`
	Period             *period `json:"period"`
	Date               *string `json:"date"`
	DateAsserted       *string `json:"dateAsserted"`
	Context            *struct {
		Period *period `json:"period"`
	} `json:"context"`

	Code                      *concept        `json:"code"`
	MedicationCodeableConcept *concept        `json:"medicationCodeableConcept"`
	MedicationReference       *reference      `json:"medicationReference"`
	VaccineCode               *concept        `json:"vaccineCode"`
	Type                      json.RawMessage `json:"type"` // a CodeableConcept, or a list of them (Encounter)
}

// dateField is one candidate date of a resource, by its FHIR path.
type dateField struct {
	path  string
	value *string
}

// dateFields lists, for each kept type, the fields that give its effective date, best first: the first one
// present is the entry's date. Every one present must be a valid FHIR date, or the resource is refused.
func (h *resourceHead) dateFields() []dateField {
	start := func(p *period) *string {
		if p == nil {
			return nil
		}
		return p.Start
	}
	switch h.ResourceType {
	case "AllergyIntolerance":
		return []dateField{{"recordedDate", h.RecordedDate}, {"onsetDateTime", h.OnsetDateTime}}
	case "MedicationRequest":
		return []dateField{{"authoredOn", h.AuthoredOn}}
	case "MedicationStatement":
		return []dateField{{"effectiveDateTime", h.EffectiveDateTime}, {"effectivePeriod.start", start(h.EffectivePeriod)}, {"dateAsserted", h.DateAsserted}}
	case "MedicationAdministration":
		return []dateField{{"effectiveDateTime", h.EffectiveDateTime}, {"effectivePeriod.start", start(h.EffectivePeriod)}}
	case "Observation":
		return []dateField{{"effectiveDateTime", h.EffectiveDateTime}, {"effectivePeriod.start", start(h.EffectivePeriod)},
			{"effectiveInstant", h.EffectiveInstant}, {"issued", h.Issued}}
	case "DiagnosticReport":
		return []dateField{{"effectiveDateTime", h.EffectiveDateTime}, {"effectivePeriod.start", start(h.EffectivePeriod)}, {"issued", h.Issued}}
	case "Condition":
		return []dateField{{"onsetDateTime", h.OnsetDateTime}, {"recordedDate", h.RecordedDate}}
	case "Procedure":
		return []dateField{{"performedDateTime", h.PerformedDateTime}, {"performedPeriod.start", start(h.PerformedPeriod)}}
	case "Immunization":
		return []dateField{{"occurrenceDateTime", h.OccurrenceDateTime}, {"recorded", h.Recorded}}
	case "DocumentReference":
		var ctx *string
		if h.Context != nil {
			ctx = start(h.Context.Period)
		}
		return []dateField{{"context.period.start", ctx}, {"date", h.Date}}
	case "Encounter":
		return []dateField{{"period.start", start(h.Period)}}
	}
	return nil
}

// effectiveDate returns the entry's date (nil when the resource has none), or an error naming the first field
// whose value is not a FHIR date.
func (h *resourceHead) effectiveDate() (*time.Time, error) {
	var out *time.Time
	for _, f := range h.dateFields() {
		if f.value == nil {
			continue
		}
		t, err := parseFHIRDate(*f.value)
		if err != nil {
			return nil, fmt.Errorf("%s is not a valid FHIR date", f.path)
		}
		if out == nil {
			out = &t
		}
	}
	return out, nil
}

// parseFHIRDate reads a FHIR date, dateTime or instant: YYYY, YYYY-MM, YYYY-MM-DD, or a full date-time with
// seconds and a zone. A partial date stands for its first instant, UTC.
func parseFHIRDate(s string) (time.Time, error) {
	layouts := []string{"2006", "2006-01", "2006-01-02"}
	if strings.Contains(s, "T") {
		layouts = []string{time.RFC3339Nano}
	}
	for _, l := range layouts {
		if len(s) != len(l) && l != time.RFC3339Nano {
			continue
		}
		if t, err := time.Parse(l, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("invalid date")
}

// subjectReference is the reference to the patient a kept resource is about.
func (h *resourceHead) subjectReference() string {
	if h.Subject != nil && h.Subject.Reference != "" {
		return h.Subject.Reference
	}
	if h.Patient != nil {
		return h.Patient.Reference
	}
	return ""
}

// codeAndDisplay picks the resource's main code ("system|code") and its human-readable name.
func (h *resourceHead) codeAndDisplay() (code, display string) {
	var c *concept
	switch {
	case h.Code != nil:
		c = h.Code
	case h.MedicationCodeableConcept != nil:
		c = h.MedicationCodeableConcept
	case h.VaccineCode != nil:
		c = h.VaccineCode
	case len(h.Type) > 0:
		var one concept
		var many []concept
		if json.Unmarshal(h.Type, &one) == nil {
			c = &one
		} else if json.Unmarshal(h.Type, &many) == nil && len(many) > 0 {
			c = &many[0]
		}
	}
	if c == nil {
		if h.MedicationReference != nil {
			return "", h.MedicationReference.Display
		}
		return "", ""
	}
	display = c.Text
	for _, cd := range c.Coding {
		if code == "" && cd.Code != "" {
			code = cd.System + "|" + cd.Code
		}
		if display == "" {
			display = cd.Display
		}
	}
	return code, display
}

// patientResource is what is kept of a Patient: the rest of it (address, telecom, extensions, ...) is not
// stored.
type patientResource struct {
	ResourceType string       `json:"resourceType"`
	ID           string       `json:"id"`
	Identifier   []Identifier `json:"identifier"`
	Name         []struct {
		Use    string   `json:"use"`
		Family string   `json:"family"`
		Given  []string `json:"given"`
	} `json:"name"`
	Gender    string `json:"gender"`
	BirthDate string `json:"birthDate"`
}

// demographics is the sealed blob of a patient.
type demographics struct {
	FHIRID      string       `json:"fhir_id"`
	Family      string       `json:"family,omitempty"`
	Given       []string     `json:"given,omitempty"`
	Gender      string       `json:"gender,omitempty"`
	BirthDate   string       `json:"birth_date,omitempty"`
	Identifiers []Identifier `json:"identifiers"`
}

func (p *patientResource) demographics() (demographics, error) {
	d := demographics{FHIRID: p.ID, Gender: p.Gender, BirthDate: p.BirthDate}
	if p.BirthDate != "" {
		if _, err := parseFHIRDate(p.BirthDate); err != nil || strings.Contains(p.BirthDate, "T") {
			return d, fmt.Errorf("birthDate is not a valid FHIR date")
		}
	}
	// The official name, else the first one.
	for i, n := range p.Name {
		if i == 0 || n.Use == "official" {
			d.Family, d.Given = n.Family, n.Given
			if n.Use == "official" {
				break
			}
		}
	}
	for _, id := range p.Identifier {
		if strings.TrimSpace(id.Value) != "" {
			d.Identifiers = append(d.Identifiers, Identifier{System: strings.TrimSpace(id.System), Value: strings.TrimSpace(id.Value)})
		}
	}
	return d, nil
}

// resourceNames are the element names the import reads from a resource: a case variant of one ("Subject")
// is refused rather than ignored, as are duplicate names and invalid UTF-8 (see strictjson).
var resourceNames = append(strictjson.Names(resourceHead{}), strictjson.Names(patientResource{})...)

// decodeHead reads a resource's head; the caller has checked the resource strictly (the bundle's entry, or
// the NDJSON line, with strictjson.Check: each byte is walked once). A field of another shape than expected
// refuses a kept resource, but not one of a type that is skipped anyway (PractitionerRole.code is a list).
func decodeHead(raw []byte, h *resourceHead) error {
	// Most exports write resourceType first: a skipped type (a large Claim or ExplanationOfBenefit) is then
	// recognised without decoding it.
	if rt, ok := sniffType(raw); ok && rt != "Patient" {
		if _, kept := CategoryOf(rt); !kept {
			h.ResourceType = rt
			return nil
		}
	}
	err := json.Unmarshal(raw, h)
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && h.ResourceType != "" && h.ResourceType != "Patient" {
		if _, kept := CategoryOf(h.ResourceType); !kept {
			return nil
		}
	}
	return err
}

// sniffType reads the resource type when the JSON object starts with a plain "resourceType" member.
func sniffType(raw []byte) (string, bool) {
	i := 0
	skip := func() {
		for i < len(raw) && (raw[i] == ' ' || raw[i] == '\n' || raw[i] == '\r' || raw[i] == '\t') {
			i++
		}
	}
	expect := func(s string) bool {
		skip()
		if len(raw)-i < len(s) || string(raw[i:i+len(s)]) != s {
			return false
		}
		i += len(s)
		return true
	}
	if !expect("{") || !expect(`"resourceType"`) || !expect(":") || !expect(`"`) {
		return "", false
	}
	start := i
	for i < len(raw) && raw[i] != '"' {
		if raw[i] == '\\' || raw[i] < 0x20 {
			return "", false
		}
		i++
	}
	if i == len(raw) || i == start {
		return "", false
	}
	return string(raw[start:i]), true
}
