package records

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// An extract is self-contained: a receiving system must be able to resolve every reference in it. Resources
// keep references to what the extract does not hold (the encounter of an observation when encounters were not
// released, a practitioner, an organisation); and the same target may be spelt "urn:uuid:<id>" or
// "<Type>/<id>". At rendering, each reference is checked against the Bundle's own entries:
//
//   - one that names an entry under its fullUrl is kept;
//   - one that names an entry otherwise is rewritten to that entry's fullUrl;
//   - any other loses its "reference" member and keeps (or gets) a display, NotIncluded by default.
//
// The content hash covers the resource as stored, so each change is recorded on the Bundle entry as an
// extension OriginalReference, "<JSON pointer> <original Reference object, canonical JSON>": a recipient puts
// the originals back (RestoreResource), takes the canonical form (Canonical) and gets the bytes the content
// hash covers.

// OriginalReference is the URL of the extension that records a rewritten reference of an entry's resource.
const OriginalReference = "urn:gatewayd:original-reference"

// NotIncluded is the display a reference gets when its target is not in the extract and it had no display.
const NotIncluded = "Not included in this extract"

// bundleTargets tells what a Bundle holds: its Patient and the manifest's entries. An entry's id is a keyed
// MAC of its patient, type and FHIR id (entryID), so whether a reference names an entry of the extract is
// known from the reference and the manifest's ids alone ("Type/id": one MAC; "urn:uuid:id": one per kept
// type, at most), with no pass over the stored entries before rendering to read their types and FHIR ids
// (which was a quarter of a retrieval's CPU). The rendering pass checks that each entry's stored type and FHIR
// id give its id (holds), so the targets are exactly those of the entries the Bundle holds: a reference to
// anything else never resolves, and loses its "reference" as before.
type bundleTargets struct {
	patientID     string // the internal id, in every entry id's MAC
	patientFHIRID string
	ids           [][16]byte // the manifest's entry ids, sorted: 16 bytes per entry, whatever else it holds
	mac           *entryMACer
	seen          map[string]string // references already resolved ("" when not in the Bundle), bounded
	rewriter      rewriter          // selfContained's buffers, reused from entry to entry
	order         []string          // the types a "urn:uuid:" reference is tried as, the last found first
}

// keptTypes are the types an entry may have, where a "urn:uuid:" reference's target is looked for.
var keptTypes = slices.Sorted(maps.Keys(categoryOf))

// lookupOrder is keptTypes in the order a "urn:uuid:" reference's target is first looked for. The reference
// does not say its type, so each try is an entry id's MAC (HMAC-SHA-256) for one type: in alphabetical order,
// the references of an all-categories extract (Synthea's Dana Feest, 87 KB: 9 distinct encounters, 11
// observations) took about 160 MACs, 4.8 % of the server's CPU under bench-peer's load at c = 8. Most
// references name the entry's encounter, a report's results (observations) or a reason (a condition); within
// one rendering the type last found moves to the front (bundleTargets.resolve), as references of one kind
// come together. The order changes how soon a target is found, never whether it is.
var lookupOrder = func() []string {
	first := []string{"Encounter", "Observation", "Condition", "DiagnosticReport"}
	order := slices.Clone(first)
	for _, t := range keptTypes {
		if !slices.Contains(first, t) {
			order = append(order, t)
		}
	}
	return order
}()

// targetCache bounds the memo of resolved references: most references of an extract name the same few
// targets (the patient, an encounter), and a bound keeps memory flat whatever the extract's size.
const targetCache = 4096

// targetsOf gives the targets of m's Bundle, from the manifest's references (no entry is read).
func (s *Service) targetsOf(m Manifest, patientFHIRID string) *bundleTargets {
	b := &bundleTargets{patientID: m.PatientID, patientFHIRID: patientFHIRID, ids: make([][16]byte, 0, m.Len()),
		mac: s.entryMAC(), seen: map[string]string{}}
	for ref := range m.refs() {
		var id [16]byte
		// An id that is not an entry id (lower-case hex of 16 bytes) can name no target; rendering refuses it.
		if len(ref.ID) == 2*len(id) && strings.ToLower(ref.ID) == ref.ID {
			if _, err := hex.Decode(id[:], []byte(ref.ID)); err == nil {
				b.ids = append(b.ids, id)
			}
		}
	}
	slices.SortFunc(b.ids, func(x, y [16]byte) int { return bytes.Compare(x[:], y[:]) })
	return b
}

// holds says whether an entry of the manifest, as stored (its type and FHIR id), is the one its id names.
func (b *bundleTargets) holds(e *loadedEntry) bool {
	sum := b.mac.of(b.patientID, e.ResourceType, e.fhirID)
	var id [2 * len(sum)]byte
	hex.Encode(id[:], sum[:])
	return string(id[:]) == e.ID
}

func (b *bundleTargets) has(resourceType, id string) bool {
	sum := b.mac.of(b.patientID, resourceType, id)
	_, found := slices.BinarySearchFunc(b.ids, sum, func(x, y [16]byte) int { return bytes.Compare(x[:], y[:]) })
	return found
}

// lookup gives the fullUrl of the entry (or the Patient) a reference names, and false when it names nothing
// the Bundle holds. Spellings: the fullUrl itself, "<Type>/<id>", and "urn:uuid:<id>" when the id is a UUID.
func (b *bundleTargets) lookup(ref []byte) (string, bool) {
	if full, ok := b.seen[string(ref)]; ok {
		return full, full != ""
	}
	full := b.resolve(string(ref))
	if len(b.seen) >= targetCache {
		clear(b.seen)
	}
	b.seen[string(ref)] = full
	return full, full != ""
}

func (b *bundleTargets) resolve(ref string) string {
	if id, ok := strings.CutPrefix(ref, "urn:uuid:"); ok {
		if !isUUID(id) {
			return ""
		}
		if id == b.patientFHIRID {
			return ref
		}
		if b.order == nil {
			b.order = slices.Clone(lookupOrder)
		}
		for i, t := range b.order {
			if b.has(t, id) {
				copy(b.order[1:i+1], b.order[:i])
				b.order[0] = t
				return ref
			}
		}
		return ""
	}
	t, id, ok := strings.Cut(ref, "/")
	if !ok {
		return ""
	}
	if t == "Patient" && id == b.patientFHIRID {
		return fullURL(t, id)
	}
	if _, kept := categoryOf[t]; kept && b.has(t, id) {
		return fullURL(t, id)
	}
	return ""
}

// selfContained returns the resource with every reference resolving inside the Bundle (or removed), and the
// originals of what it changed; an unchanged resource comes back as the same bytes. What it returns may be
// overwritten by the next call: the caller writes it out first.
func (b *bundleTargets) selfContained(resource []byte) ([]byte, []string, error) {
	if !b.anyToChange(resource) {
		return resource, nil, nil
	}
	if out, originals, ok := b.rewrite(resource); ok {
		return out, originals, nil
	}
	return b.selfContainedTree(resource)
}

// selfContainedTree is selfContained on the resource decoded into a tree: what rewrite falls back to, for
// what it does not handle on the bytes, and what it is tested against.
func (b *bundleTargets) selfContainedTree(resource []byte) ([]byte, []string, error) {
	dec := json.NewDecoder(bytes.NewReader(resource))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, nil, fmt.Errorf("resource: %w", err)
	}
	var originals []string
	var walk func(v any, pointer string) error
	walk = func(v any, pointer string) error {
		switch x := v.(type) {
		case map[string]any:
			if ref, ok := x["reference"].(string); ok && !strings.HasPrefix(ref, "#") {
				if full, ok := b.lookup([]byte(ref)); !ok || full != ref {
					orig, err := canonicalValue(x)
					if err != nil {
						return err
					}
					originals = append(originals, pointer+" "+string(orig))
					if ok {
						x["reference"] = full
					} else {
						delete(x, "reference")
						if _, has := x["display"]; !has {
							x["display"] = NotIncluded
						}
					}
				}
			}
			keys := make([]string, 0, len(x))
			for k := range x {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for _, k := range keys {
				if err := walk(x[k], pointer+"/"+escapePointer(k)); err != nil {
					return err
				}
			}
		case []any:
			for i, e := range x {
				if err := walk(e, pointer+"/"+strconv.Itoa(i)); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(v, ""); err != nil {
		return nil, nil, err
	}
	if len(originals) == 0 {
		return resource, nil, nil
	}
	out, err := canonicalValue(v)
	return out, originals, err
}

// anyToChange says whether a reference of resource must change. Most entries' references all name an entry
// of the Bundle under its fullUrl (their patient, their encounter): such a resource is written as stored, and
// only scanned here, never decoded into a tree (which was 40 % of BenchmarkRender) nor tokenized whole (which
// was, next, the largest cost of writing an entry). Each member named "reference" is found as the bytes
// `"reference":` with its first quote not escaped: in valid JSON, an unescaped quote starts or ends a string,
// and a string followed by a colon is a member's name. (A name spelt with escapes, "\u0072eference", is not
// seen, as with the tokenizer before: stored resources are canonical JSON, which does not escape letters.) A
// reference it cannot judge from the raw bytes (escaped, or not a string) counts as one to change: the full
// walk of selfContained decides. The resource is not validated again: it hashed to the signed content hash,
// so it is the canonical JSON the import wrote.
func (b *bundleTargets) anyToChange(resource []byte) bool {
	const name = `"reference":`
	for rest, at := resource, 0; ; rest = rest[at+len(name):] {
		if at = indexReferenceName(rest); at < 0 {
			return false
		}
		if escaped(rest[:at]) {
			continue
		}
		v := bytes.TrimLeft(rest[at+len(name):], " \t\r\n")
		if len(v) == 0 || v[0] != '"' {
			return true
		}
		end := bytes.IndexByte(v[1:], '"')
		if end < 0 {
			return true
		}
		ref := v[1 : 1+end]
		if bytes.IndexByte(ref, '\\') >= 0 {
			return true
		}
		if bytes.HasPrefix(ref, []byte("#")) {
			continue
		}
		if full, ok := b.lookup(ref); !ok || full != string(ref) {
			return true
		}
	}
}

// indexReferenceName is bytes.Index(b, []byte(`"reference":`)), found faster: it looks for `ference":` and
// checks the three bytes before. bytes.Index looks for a pattern's first byte and gives up on that for a
// slower search once it has found it too often where the pattern is not; in JSON the quote is everywhere, so
// every resource was searched the slow way (10 % of the server's CPU retrieving the 2,000-entry extract on
// PostgreSQL, 2 December 2026; on a Synthea bundle's canonical JSON 771 against 3,272 MB/s). An 'f' is rare
// enough for the fast way. TestIndexReferenceName holds it to bytes.Index.
func indexReferenceName(b []byte) int {
	const tail = `ference":` // `"reference":` without `"re`
	for from := 0; ; {
		k := bytes.Index(b[from:], []byte(tail))
		if k < 0 {
			return -1
		}
		if k += from; k >= 3 && b[k-3] == '"' && b[k-2] == 'r' && b[k-1] == 'e' {
			return k - 3
		}
		from = k + 1
	}
}

// escaped says whether the byte after before is escaped: an odd number of backslashes ends before.
func escaped(before []byte) bool {
	n := 0
	for i := len(before) - 1; i >= 0 && before[i] == '\\'; i-- {
		n++
	}
	return n%2 == 1
}

// RestoreResource puts back the original references recorded on a rendered entry (its OriginalReference
// extensions' values) and returns the resource's canonical form: the bytes whose SHA-256 is the entry's
// content hash.
func RestoreResource(resource []byte, originals []string) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(resource))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("resource: %w", err)
	}
	for _, o := range originals {
		pointer, raw, ok := strings.Cut(o, " ")
		if !ok {
			return nil, fmt.Errorf("original reference %q: no pointer", o)
		}
		d := json.NewDecoder(strings.NewReader(raw))
		d.UseNumber()
		var orig any
		if err := d.Decode(&orig); err != nil {
			return nil, fmt.Errorf("original reference at %s: %w", pointer, err)
		}
		if err := setPointer(v, pointer, orig); err != nil {
			return nil, err
		}
	}
	return canonicalValue(v)
}

// setPointer replaces the value at a JSON pointer (RFC 6901) inside v; the root itself is never a Reference.
func setPointer(v any, pointer string, value any) error {
	parts := strings.Split(pointer, "/")
	if len(parts) < 2 || parts[0] != "" {
		return fmt.Errorf("bad JSON pointer %q", pointer)
	}
	parts = parts[1:]
	for i, p := range parts {
		p = strings.ReplaceAll(strings.ReplaceAll(p, "~1", "/"), "~0", "~")
		last := i == len(parts)-1
		switch x := v.(type) {
		case map[string]any:
			if last {
				x[p] = value
				return nil
			}
			v = x[p]
		case []any:
			n, err := strconv.Atoi(p)
			if err != nil || n < 0 || n >= len(x) {
				return fmt.Errorf("bad JSON pointer %q", pointer)
			}
			if last {
				x[n] = value
				return nil
			}
			v = x[n]
		default:
			return fmt.Errorf("bad JSON pointer %q", pointer)
		}
	}
	return nil
}

func escapePointer(k string) string {
	return strings.ReplaceAll(strings.ReplaceAll(k, "~", "~0"), "/", "~1")
}

// canonicalValue is the canonical form of a decoded JSON value (numbers kept as json.Number, as written).
func canonicalValue(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	if _, isObject := v.(map[string]any); !isObject {
		return bytes.TrimSpace(buf.Bytes()), nil
	}
	return Canonical(buf.Bytes())
}
