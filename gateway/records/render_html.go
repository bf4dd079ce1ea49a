package records

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"sync"

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
	bw := bufio.NewWriterSize(w, 64<<10)
	page := &htmlPage{Lang: lang, Watermark: wm, Name: strings.TrimSpace(strings.Join(d.Given, " ") + " " + d.Family),
		BirthDate: d.BirthDate, Identifier: id.System + "|" + id.Value, Count: len(m.Entries)}
	if !wm.Expiry.IsZero() {
		page.Expiry = wm.Expiry.UTC().Format("2006-01-02 15:04 UTC")
	}
	if d.Gender != "" {
		page.Gender = templates.T(lang, "records.extract.gender."+d.Gender)
	}
	if err := t.ExecuteTemplate(bw, "extract-head", page); err != nil {
		return fmt.Errorf("render extract: %w", err)
	}
	var current Category
	row := &htmlEntry{Lang: lang}
	err = s.eachEntry(ctx, m, true, func(e *loadedEntry) error {
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
			row.Date = e.Date.UTC().Format("2006-01-02")
		}
		describe(e.ResourceType, e.resource, row)
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

func (q *quantity) String() string {
	if q == nil || q.Value == nil {
		return ""
	}
	v := q.Value.String()
	if f, err := q.Value.Float64(); err == nil && strings.Contains(v, ".") && !math.IsInf(f, 0) {
		// Generated values carry 15 decimals: two are what a reader needs; the FHIR Bundle keeps them all.
		v = strconv.FormatFloat(math.Round(f*100)/100, 'f', -1, 64)
	}
	unit := q.Unit
	if unit == "" {
		unit = q.Code
	}
	return strings.TrimSpace(q.Comparator + v + " " + unit)
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

func conceptText(c *concept) string {
	if c == nil {
		return ""
	}
	if c.Text != "" {
		return c.Text
	}
	for _, cd := range c.Coding {
		if cd.Display != "" {
			return cd.Display
		}
		if cd.Code != "" {
			return cd.Code
		}
	}
	return ""
}

// describe fills the value, details and text of a row from the resource. A resource it cannot read is shown
// with its display only: the Bundle form has it whole.
func describe(resourceType string, resource []byte, row *htmlEntry) {
	var d details
	if json.Unmarshal(resource, &d) != nil {
		return
	}
	switch resourceType {
	case "Observation":
		switch {
		case d.ValueQuantity != nil:
			row.Value = d.ValueQuantity.String()
		case d.ValueCodeableConcept != nil:
			row.Value = conceptText(d.ValueCodeableConcept)
		case d.ValueString != nil:
			row.Value = *d.ValueString
		case d.ValueBoolean != nil:
			row.Value = strconv.FormatBool(*d.ValueBoolean)
		case d.ValueInteger != nil:
			row.Value = d.ValueInteger.String()
		}
		var parts []string
		for _, c := range d.Component {
			v := c.ValueQuantity.String()
			if v == "" {
				v = conceptText(c.ValueCodeableConcept)
			}
			parts = append(parts, conceptText(&c.Code)+": "+v)
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
		row.Value = d.Criticality
		row.Details = conceptText(&d.ClinicalStatus)
	case "Condition":
		row.Details = conceptText(&d.ClinicalStatus)
	case "MedicationRequest", "MedicationStatement", "MedicationAdministration", "Procedure", "Immunization":
		row.Details = d.Status
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
