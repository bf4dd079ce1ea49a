package records

import (
	"crypto/sha256"
	"encoding/hex"
	"time"
)

// ipsSection is one section of the International Patient Summary's Composition: its LOINC code and title,
// and the category of entries it lists.
type ipsSection struct {
	Code, Title string
	Category    Category
}

// ipsSections are the sections of an emergency extract, in the IPS order, one per category of the emergency
// minimum dataset.
var ipsSections = []ipsSection{
	{"48765-2", "Allergies and adverse reactions", Allergies},
	{"10160-0", "History of medication use", Treatments},
	{"11450-4", "Problem list", Conditions},
	{"11369-6", "History of immunizations", Immunizations},
}

type fhirReference struct {
	Reference string `json:"reference,omitempty"`
	Display   string `json:"display,omitempty"`
}

type fhirCodeable struct {
	Coding []fhirCoding `json:"coding"`
}

type fhirNarrative struct {
	Status string `json:"status"`
	Div    string `json:"div"`
}

type compositionSection struct {
	Title       string          `json:"title"`
	Code        fhirCodeable    `json:"code"`
	Text        *fhirNarrative  `json:"text,omitempty"`
	Entry       []fhirReference `json:"entry,omitempty"`
	EmptyReason *fhirCodeable   `json:"emptyReason,omitempty"`
}

type composition struct {
	ResourceType    string               `json:"resourceType"`
	ID              string               `json:"id"`
	Status          string               `json:"status"`
	Type            fhirCodeable         `json:"type"`
	Subject         fhirReference        `json:"subject"`
	Date            string               `json:"date"`
	Author          []fhirReference      `json:"author"`
	Title           string               `json:"title"`
	Confidentiality string               `json:"confidentiality"`
	Section         []compositionSection `json:"section"`
}

// compositionID is the Composition's id, a UUID derived from the decision (so the same extract renders to the
// same bytes, and the id tells nothing about the patient).
func compositionID(wm Watermark) string {
	sum := sha256.Sum256([]byte("ips-composition\x00" + wm.RequestID + "\x00" + wm.DecisionID))
	h := hex.EncodeToString(sum[:16])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func compositionURL(wm Watermark) string { return "urn:uuid:" + compositionID(wm) }

// ipsComposition is the Composition heading an emergency extract: a patient summary document (LOINC 60591-5)
// about the Patient entry, dated at the release, whose four sections refer to the Bundle's entries of their
// category. A section without entries says so (emptyReason "unavailable", as IPS asks, and a line of
// narrative, which FHIR's cmp-1 requires of a section without entries).
func ipsComposition(wm Watermark, patientURL string, entries map[Category][]string) composition {
	c := composition{ResourceType: "Composition", ID: compositionID(wm), Status: "final",
		Type:    fhirCodeable{[]fhirCoding{{System: "http://loinc.org", Code: "60591-5", Display: "Patient summary Document"}}},
		Subject: fhirReference{Reference: patientURL}, Date: wm.Released.UTC().Format(time.RFC3339),
		Author: []fhirReference{{Display: "gatewayd (emergency access, request " + wm.RequestID + ")"}},
		Title:  "International Patient Summary (emergency access)", Confidentiality: "R"}
	for _, sec := range ipsSections {
		cs := compositionSection{Title: sec.Title,
			Code: fhirCodeable{[]fhirCoding{{System: "http://loinc.org", Code: sec.Code, Display: sec.Title}}}}
		for _, u := range entries[sec.Category] {
			cs.Entry = append(cs.Entry, fhirReference{Reference: u})
		}
		if len(cs.Entry) == 0 {
			cs.Text = &fhirNarrative{Status: "generated", Div: `<div xmlns="http://www.w3.org/1999/xhtml">No information released.</div>`}
			cs.EmptyReason = &fhirCodeable{[]fhirCoding{{System: "http://terminology.hl7.org/CodeSystem/list-empty-reason",
				Code: "unavailable", Display: "Unavailable"}}}
		}
		c.Section = append(c.Section, cs)
	}
	return c
}
