package records

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"gatewayd/templates"
)

var extractTemplate = sync.OnceValues(templates.Extract)

// htmlPage is what the head and foot blocks of extract.html receive.
type htmlPage struct {
	Lang       string
	Watermark  Watermark
	Expiry     string
	Name       string
	BirthDate  string
	Gender     string
	Identifier string
	Count      int
	Zone       string
	Ref        string // the request's short reference
}

func (p *htmlPage) T(key string, args ...any) string { return templates.T(p.Lang, key, args...) }

// htmlGroup is a category heading.
type htmlGroup struct {
	Lang     string
	Category Category
	Label    string
}

func (g *htmlGroup) T(key string, args ...any) string { return templates.T(g.Lang, key, args...) }

// htmlEntry is one row of the page.
type htmlEntry struct {
	Lang    string
	Date    string
	Display string
	Details string // e.g. the results of a report, the status of a treatment
	Value   string // value and unit of a result
	Text    string // the text of a plain-text document
}

func (e *htmlEntry) T(key string, args ...any) string { return templates.T(e.Lang, key, args...) }

// RenderHTML writes the manifest as a printable HTML page (templates/extract.html): the watermark at the top
// and on every printed page, the patient, then the entries grouped by category in manifest order, with their
// dates, displays, and values with units for results. It streams entry by entry. lang is "fr" or "en".
func (s *Service) RenderHTML(ctx context.Context, w io.Writer, m Manifest, id Identifier, wm Watermark, lang string) error {
	if !templates.Supported(lang) {
		lang = templates.Languages[0]
	}
	t, err := extractTemplate()
	if err != nil {
		return err
	}
	d, err := s.patientFor(ctx, m, id)
	if err != nil {
		return err
	}
	bw := renderWriter(w)
	defer releaseWriter(bw)
	page := &htmlPage{Lang: lang, Watermark: wm, Name: strings.TrimSpace(strings.Join(d.Given, " ") + " " + d.Family),
		BirthDate: templates.FormatDate(lang, d.BirthDate), Identifier: id.System + "|" + id.Value, Count: m.Len()}
	if !wm.Expiry.IsZero() {
		page.Expiry = templates.FormatTime(lang, wm.Zone, wm.Expiry)
	}
	if k := "purpose." + wm.Purpose; templates.Has(k) {
		page.Watermark.Purpose = templates.T(lang, k)
	}
	page.Ref = templates.Ref(wm.RequestID)
	page.Zone = "UTC"
	if wm.Zone != nil {
		page.Zone = wm.Zone.String()
	}
	if d.Gender != "" {
		page.Gender = templates.T(lang, "records.extract.gender."+d.Gender)
	}
	if err := t.ExecuteTemplate(bw, "extract-head", page); err != nil {
		return fmt.Errorf("render extract: %w", err)
	}
	var current Category
	row := &htmlEntry{Lang: lang}
	err = s.eachEntry(ctx, m, withResource|withDisplay, func(e *loadedEntry) error {
		if e.Category != current {
			if current != "" {
				if err := t.ExecuteTemplate(bw, "extract-group-end", nil); err != nil {
					return err
				}
			}
			current = e.Category
			g := &htmlGroup{Lang: lang, Category: e.Category, Label: templates.T(lang, "records.category."+string(e.Category))}
			if err := t.ExecuteTemplate(bw, "extract-group-start", g); err != nil {
				return err
			}
		}
		*row = htmlEntry{Lang: lang, Display: e.Display}
		if e.Date != nil {
			row.Date = templates.FormatDate(lang, e.Date.UTC().Format(time.DateOnly))
		}
		describe(lang, e.ResourceType, e.resource, row)
		return t.ExecuteTemplate(bw, "extract-entry", row)
	})
	if err != nil {
		return fmt.Errorf("render extract: %w", err)
	}
	if current != "" {
		if err := t.ExecuteTemplate(bw, "extract-group-end", nil); err != nil {
			return fmt.Errorf("render extract: %w", err)
		}
	}
	if err := t.ExecuteTemplate(bw, "extract-foot", page); err != nil {
		return fmt.Errorf("render extract: %w", err)
	}
	return bw.Flush()
}

type quantity struct {
	Value      *json.Number `json:"value"`
	Comparator string       `json:"comparator"`
	Unit       string       `json:"unit"`
	Code       string       `json:"code"`
}

// text writes the quantity for a reader: rounded value with the language's decimal separator, and the
// unit's printed symbol.
func (q *quantity) text(lang string) string {
	if q == nil || q.Value == nil {
		return ""
	}
	v := q.Value.String()
	if f, err := q.Value.Float64(); err == nil && strings.Contains(v, ".") && !math.IsInf(f, 0) {
		// Generated values carry 15 decimals: two are what a reader needs; the FHIR Bundle keeps them all.
		v = strconv.FormatFloat(math.Round(f*100)/100, 'f', -1, 64)
	}
	unit := q.Code
	if unit == "" {
		unit = q.Unit
	}
	return strings.TrimSpace(q.Comparator + decimal(lang, v) + " " + unitDisplay(unit))
}

// details is what the page shows beyond the display, read from the resource itself.
type details struct {
	ValueQuantity        *quantity    `json:"valueQuantity"`
	ValueCodeableConcept *concept     `json:"valueCodeableConcept"`
	ValueString          *string      `json:"valueString"`
	ValueBoolean         *bool        `json:"valueBoolean"`
	ValueInteger         *json.Number `json:"valueInteger"`
	Component            []struct {
		Code                 concept   `json:"code"`
		ValueQuantity        *quantity `json:"valueQuantity"`
		ValueCodeableConcept *concept  `json:"valueCodeableConcept"`
	} `json:"component"`
	Result     []reference `json:"result"`
	Conclusion string      `json:"conclusion"`
	Content    []struct {
		Attachment struct {
			ContentType string `json:"contentType"`
			Data        []byte `json:"data"` // base64 in JSON
			Title       string `json:"title"`
		} `json:"attachment"`
	} `json:"content"`
	Status         string  `json:"status"`
	Criticality    string  `json:"criticality"`
	ClinicalStatus concept `json:"clinicalStatus"`
}

// describe fills the value, details and text of a row from the resource. A resource it cannot read is shown
// with its display only: the Bundle form has it whole.
func describe(lang, resourceType string, resource []byte, row *htmlEntry) {
	var d details
	if json.Unmarshal(resource, &d) != nil {
		return
	}
	switch resourceType {
	case "Observation":
		switch {
		case d.ValueQuantity != nil:
			row.Value = d.ValueQuantity.text(lang)
		case d.ValueCodeableConcept != nil:
			row.Value = conceptWord(lang, d.ValueCodeableConcept)
		case d.ValueString != nil:
			row.Value = *d.ValueString
		case d.ValueBoolean != nil:
			row.Value = codeWord(lang, strconv.FormatBool(*d.ValueBoolean))
		case d.ValueInteger != nil:
			row.Value = d.ValueInteger.String()
		}
		var parts []string
		for _, c := range d.Component {
			v := c.ValueQuantity.text(lang)
			if v == "" {
				v = conceptWord(lang, c.ValueCodeableConcept)
			}
			parts = append(parts, conceptWord(lang, &c.Code)+templates.T(lang, "sign.sep")+v)
		}
		if len(parts) > 0 {
			row.Value = strings.Join(parts, "; ")
		}
	case "DiagnosticReport":
		var parts []string
		for _, r := range d.Result {
			if r.Display != "" {
				parts = append(parts, r.Display)
			}
		}
		row.Details = strings.Join(parts, "; ")
		row.Value = d.Conclusion
	case "AllergyIntolerance":
		row.Value = codeWord(lang, d.Criticality)
		row.Details = conceptWord(lang, &d.ClinicalStatus)
	case "Condition":
		row.Details = conceptWord(lang, &d.ClinicalStatus)
	case "MedicationRequest", "MedicationStatement", "MedicationAdministration", "Procedure", "Immunization":
		row.Details = codeWord(lang, d.Status)
	case "DocumentReference":
		var texts []string
		for _, c := range d.Content {
			if strings.HasPrefix(c.Attachment.ContentType, "text/plain") && len(c.Attachment.Data) > 0 {
				texts = append(texts, strings.TrimSpace(string(c.Attachment.Data)))
			}
		}
		row.Text = strings.Join(texts, "\n\n")
	}
}
