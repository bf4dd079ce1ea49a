package records

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// WatermarkSystem is the code system of the watermark tags in a rendered Bundle.
const WatermarkSystem = "urn:gatewayd:watermark"

type fhirCoding struct {
	System  string `json:"system"`
	Code    string `json:"code"`
	Display string `json:"display,omitempty"`
}

// RenderBundle writes the manifest as a FHIR R4 Bundle of type collection: first a minimal Patient (name,
// birth date, gender and the identifier asked for, nothing else), then each entry's resource, exactly the
// bytes whose SHA-256 is the entry's content hash, except that references are made to resolve inside the
// Bundle or removed (see render_refs.go; the entry then records the originals). The watermark is in Bundle.meta: meta.security holds the
// confidentiality label R (restricted), meta.tag one coding per watermark field (system
// urn:gatewayd:watermark, code = field name, display = value); Bundle.identifier is the request id. Nothing in
// the output depends on the time of rendering: the same manifest renders to the same bytes.
func (s *Service) RenderBundle(ctx context.Context, w io.Writer, m Manifest, id Identifier, wm Watermark) error {
	return s.renderBundle(ctx, w, m, id, wm, false)
}

// RenderIPS writes an emergency extract in the International Patient Summary's shape: the Bundle of
// RenderBundle, of type document, stamped with the release time (wm.Released), whose first entry is a
// Composition (see ipsComposition) with the allergies, medications, problems and immunizations sections, each
// referring to the Bundle's entries of its category. The entries themselves are rendered as in RenderBundle.
func (s *Service) RenderIPS(ctx context.Context, w io.Writer, m Manifest, id Identifier, wm Watermark) error {
	return s.renderBundle(ctx, w, m, id, wm, true)
}

func (s *Service) renderBundle(ctx context.Context, w io.Writer, m Manifest, id Identifier, wm Watermark, ips bool) error {
	d, err := s.patientFor(ctx, m, id)
	if err != nil {
		return err
	}
	targets := s.targetsOf(m, d.FHIRID)
	bw := renderWriter(w)
	defer releaseWriter(bw)
	head := struct {
		ResourceType string `json:"resourceType"`
		Meta         struct {
			Security []fhirCoding `json:"security"`
			Tag      []fhirCoding `json:"tag"`
		} `json:"meta"`
		Identifier struct {
			System string `json:"system"`
			Value  string `json:"value"`
		} `json:"identifier"`
		Type      string `json:"type"` // no "total": FHIR allows it only in search and history bundles
		Timestamp string `json:"timestamp,omitempty"`
	}{ResourceType: "Bundle", Type: "collection"}
	head.Meta.Security = []fhirCoding{{System: "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", Code: "R", Display: "restricted"}}
	head.Meta.Tag = watermarkTags(wm)
	head.Identifier.System = "urn:gatewayd:extract"
	head.Identifier.Value = wm.RequestID
	var composition []byte
	if ips {
		// A document Bundle must carry a timestamp (bdl-10): the release, not the rendering, so that the same
		// extract still renders to the same bytes.
		head.Type, head.Timestamp = "document", wm.Released.UTC().Format(time.RFC3339)
		sections, err := s.sectionsOf(ctx, m)
		if err != nil {
			return err
		}
		if composition, err = json.Marshal(ipsComposition(wm, fullURL("Patient", d.FHIRID), sections)); err != nil {
			return err
		}
	}
	hb, err := json.Marshal(head)
	if err != nil {
		return err
	}
	bw.Write(hb[:len(hb)-1]) // leave the object open for "entry"
	bw.WriteString(`,"entry":[`)
	if ips {
		writeEntry(bw, compositionURL(wm), composition)
		bw.WriteByte(',')
	}
	p := minimalPatient(d, id)
	pb, err := json.Marshal(p)
	if err != nil {
		return err
	}
	writeEntry(bw, fullURL("Patient", d.FHIRID), pb)
	err = s.eachEntry(ctx, m, withResource, func(e *loadedEntry) error {
		if !targets.holds(e) {
			return fmt.Errorf("entry %s: stored type and id do not give its id: %w", e.ID, ErrManifest)
		}
		res, originals, err := targets.selfContained(e.resource)
		if err != nil {
			return fmt.Errorf("entry %s: %w", e.ID, err)
		}
		bw.WriteByte(',')
		// bufio keeps the first write error: stop rendering as soon as the reader has gone.
		if err := writeEntryRef(bw, e, res, originals); err != nil {
			return fmt.Errorf("write bundle: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	bw.WriteString("]}\n")
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write bundle: %w", err)
	}
	return nil
}

// renderWriters are the 64 KB buffers renderings write through (the first 64 KB stay unsent until the rendering
// has gone that far, so that an early failure leaves the response uncommitted), kept from one rendering to the
// next: a new one for each was a tenth of the bytes the server allocated under bench-peer's load (issue 15). A
// buffer back in the pool still holds the end of the last extract it carried, as a freed one would until the
// allocator handed its memory out again; bufio writes out only what was written since Reset, so none of it
// reaches another response. The pool drops its buffers at garbage collections.
var renderWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 64<<10) }}

// renderWriter gives a buffered writer to w from the pool; releaseWriter gives it back, unflushed data dropped.
func renderWriter(w io.Writer) *bufio.Writer {
	bw := renderWriters.Get().(*bufio.Writer)
	bw.Reset(w)
	return bw
}

func releaseWriter(bw *bufio.Writer) {
	bw.Reset(nil)
	renderWriters.Put(bw)
}

func writeEntry(bw *bufio.Writer, url string, resource []byte) error {
	bw.WriteString(`{"fullUrl":`)
	writeJSONString(bw, url)
	bw.WriteString(`,"resource":`)
	bw.Write(resource)
	return bw.WriteByte('}')
}

// EntryExtension is the URL of the extension each rendered entry (the Patient excepted) carries: valueString
// "<entry id>/<version>", the gateway's reference of the entry. With SHA-256 of the resource bytes (the content
// hash) it lets the recipient recompute the manifest digest the officer signed. Entry ids are HMACs: they tell
// nothing about the patient.
const EntryExtension = "urn:gatewayd:manifest-entry"

// writeEntryRef writes an entry of the manifest, without an allocation in the common case (ids and URLs that
// need no escaping).
func writeEntryRef(bw *bufio.Writer, e *loadedEntry, resource []byte, originals []string) error {
	bw.WriteString(`{"extension":[{"url":"` + EntryExtension + `","valueString":`)
	if needsEscape(e.ID) {
		writeJSONString(bw, e.ID+"/"+strconv.Itoa(e.Version))
	} else {
		bw.WriteByte('"')
		bw.WriteString(e.ID)
		bw.Write(strconv.AppendInt(append(bw.AvailableBuffer(), '/'), int64(e.Version), 10))
		bw.WriteByte('"')
	}
	for _, o := range originals {
		bw.WriteString(`},{"url":"` + OriginalReference + `","valueString":`)
		writeJSONString(bw, o)
	}
	bw.WriteString(`}],"fullUrl":`)
	switch {
	case isUUID(e.fhirID):
		bw.WriteString(`"urn:uuid:`)
		bw.WriteString(e.fhirID)
		bw.WriteByte('"')
	case needsEscape(e.ResourceType) || needsEscape(e.fhirID):
		writeJSONString(bw, fullURL(e.ResourceType, e.fhirID))
	default:
		bw.WriteByte('"')
		bw.WriteString(e.ResourceType)
		bw.WriteByte('/')
		bw.WriteString(e.fhirID)
		bw.WriteByte('"')
	}
	bw.WriteString(`,"resource":`)
	bw.Write(resource)
	return bw.WriteByte('}')
}

// writeJSONString writes s as encoding/json would (the same bytes, appendJSONString): as is between quotes
// when nothing in it needs escaping (ids and URLs, the common case), else escaped in the writer's buffer.
func writeJSONString(bw *bufio.Writer, s string) {
	if !needsEscape(s) {
		bw.WriteByte('"')
		bw.WriteString(s)
		bw.WriteByte('"')
		return
	}
	bw.Write(appendJSONString(bw.AvailableBuffer(), s))
}

// needsEscape says whether encoding/json escapes anything in s: control characters, '"', '\\', HTML's '<',
// '>', '&', and what is not ASCII (U+2028, U+2029 and invalid UTF-8; the rest is checked by appendJSONString).
func needsEscape(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return true
		}
	}
	return false
}

// appendJSONString appends s quoted as json.Marshal quotes it (encoding/json's appendString with HTML
// escaping): the originals of rewritten references, which are JSON and so always have quotes to escape, are
// written without json.Marshal's allocations.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(append(b, s[start:i]...), `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(append(b, s[start:i]...), '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	return append(append(b, s[start:]...), '"')
}

func watermarkTags(wm Watermark) []fhirCoding {
	expiry := ""
	if !wm.Expiry.IsZero() {
		expiry = wm.Expiry.UTC().Format(time.RFC3339)
	}
	return []fhirCoding{
		{WatermarkSystem, "request-id", wm.RequestID},
		{WatermarkSystem, "decision-id", wm.DecisionID},
		{WatermarkSystem, "requester", wm.Requester},
		{WatermarkSystem, "purpose", wm.Purpose},
		{WatermarkSystem, "recipient", wm.Recipient},
		{WatermarkSystem, "expiry", expiry},
		{WatermarkSystem, "manifest-digest", wm.ManifestDigest},
	}
}

type fhirPatient struct {
	ResourceType string       `json:"resourceType"`
	ID           string       `json:"id,omitempty"`
	Identifier   []Identifier `json:"identifier"`
	Name         []struct {
		Family string   `json:"family,omitempty"`
		Given  []string `json:"given,omitempty"`
	} `json:"name,omitempty"`
	Gender    string `json:"gender,omitempty"`
	BirthDate string `json:"birthDate,omitempty"`
}

// minimalPatient is the Patient of an extract: only what identifies the person to the recipient.
func minimalPatient(d demographics, id Identifier) fhirPatient {
	p := fhirPatient{ResourceType: "Patient", ID: d.FHIRID, Gender: d.Gender, BirthDate: d.BirthDate}
	// The identifier as stored, which matches the one asked for after normalisation.
	want := NormalizeIdentifier(id)
	p.Identifier = []Identifier{{System: id.System, Value: id.Value}}
	for _, x := range d.Identifiers {
		if NormalizeIdentifier(x) == want {
			p.Identifier = []Identifier{x}
			break
		}
	}
	if d.Family != "" || len(d.Given) > 0 {
		p.Name = append(p.Name, struct {
			Family string   `json:"family,omitempty"`
			Given  []string `json:"given,omitempty"`
		}{d.Family, d.Given})
	}
	return p
}

// sectionsOf gives the fullUrls of m's entries by category (the IPS sections), from a pass over the entries
// before rendering (the Composition, first in the Bundle, lists them): types and FHIR ids only, the resources
// are opened and hashed by the rendering pass. Only an emergency extract, which is small, pays for it.
func (s *Service) sectionsOf(ctx context.Context, m Manifest) (map[Category][]string, error) {
	sections := map[Category][]string{}
	err := s.eachEntry(ctx, m, 0, func(e *loadedEntry) error {
		sections[e.Category] = append(sections[e.Category], fullURL(e.ResourceType, e.fhirID))
		return nil
	})
	return sections, err
}
