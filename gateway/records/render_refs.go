package records

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/go-json-experiment/json/jsontext"
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

// bundleTargets indexes the entries of a Bundle: every spelling of a reference to an entry, to its fullUrl.
type bundleTargets map[string]string

func (b bundleTargets) add(resourceType, id string) {
	full := fullURL(resourceType, id)
	b[full] = full
	b[resourceType+"/"+id] = full
	if isUUID(id) {
		b["urn:uuid:"+id] = full
	}
}

// selfContained returns the resource with every reference resolving inside the Bundle (or removed), and the
// originals of what it changed; an unchanged resource comes back as the same bytes.
func (b bundleTargets) selfContained(resource []byte) ([]byte, []string, error) {
	if change, err := b.anyToChange(resource); err != nil || !change {
		return resource, nil, err
	}
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
				if full, ok := b[ref]; !ok || full != ref {
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
// only read as tokens here, never decoded into a tree, which was the largest cost of rendering (a CPU and
// allocation profile of BenchmarkRender: 40 % of its time, most of its allocations). A reference it cannot
// judge from the raw token (escaped, or not a string) counts as one to change: the full walk decides.
func (b bundleTargets) anyToChange(resource []byte) (bool, error) {
	if !bytes.Contains(resource, []byte(`"reference"`)) {
		return false, nil
	}
	// Stored resources are canonical JSON: no duplicate names to track (which allocates per object).
	dec := jsontext.NewDecoder(bytes.NewReader(resource), jsontext.AllowDuplicateNames(true))
	for {
		switch dec.PeekKind() {
		case 0, '{', '}', '[', ']':
			if _, err := dec.ReadToken(); err == io.EOF {
				return false, nil
			} else if err != nil {
				return false, fmt.Errorf("resource: %w", err)
			}
			continue
		}
		in, n := dec.StackIndex(dec.StackDepth())
		v, err := dec.ReadValue()
		if err != nil {
			return false, fmt.Errorf("resource: %w", err)
		}
		if in != '{' || n%2 != 0 || string(v) != `"reference"` {
			continue // a value, or another member's name
		}
		if dec.PeekKind() != '"' {
			return true, nil
		}
		if v, err = dec.ReadValue(); err != nil {
			return false, fmt.Errorf("resource: %w", err)
		}
		if bytes.IndexByte(v, '\\') >= 0 {
			return true, nil
		}
		ref := v[1 : len(v)-1]
		if bytes.HasPrefix(ref, []byte("#")) {
			continue
		}
		if full, ok := b[string(ref)]; !ok || full != string(ref) {
			return true, nil
		}
	}
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
