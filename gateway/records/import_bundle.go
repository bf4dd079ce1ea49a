package records

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"strings"

	"gorm.io/gorm"

	"gatewayd/gateway/strictjson"
)

type bundleEntry struct {
	FullURL  string          `json:"fullUrl"`
	Resource json.RawMessage `json:"resource"`
}

// bundleNames and entryNames are the names the import reads at the top of a Bundle and of an entry (with
// the other members of Bundle.entry): a case variant ("Entry", "Resource") or a repeat is refused.
var (
	bundleNames = []string{"resourceType", "type", "entry"}
	entryNames  = append([]string{"fullUrl", "resource", "request", "response", "search", "link"}, resourceNames...)
)

// readAhead is what the decoder may read past a resource's end before knowing it ended (its refill size).
const readAhead = 64 << 10

// importBundle imports one Bundle file in two streaming passes, so that memory depends on the largest
// resource (MaxResourceSize), never on the file's size:
//
//  1. findPatient reads the whole file strictly (structure, names, one resource at a time) and keeps only
//     the Patient: the Patient may come last, and every kept entry must refer to it.
//  2. storeBundle reads the file again inside the bundle's one transaction, checks and stores each kept
//     entry as it is read (in chunks of at most storeChunkBytes), and appends the bundle's audit row.
//
// Both passes hash the file: if it changed between them the transaction is rolled back. A refusal in the
// second pass (an entry of another patient, an invalid date) rolls back too: nothing of the bundle is stored.
// Nothing is written to disk outside the encrypted store.
func (r *importRun) importBundle(ctx context.Context, pass func(counted bool) (io.Reader, error)) error {
	in, err := pass(false)
	if err != nil {
		return r.storeErr(ctx, err)
	}
	h1 := sha256.New()
	found, err := r.s.findPatient(io.TeeReader(in, h1), r.opts.MaxResourceSize)
	if err != nil {
		return r.storeErr(ctx, err)
	}
	local := newReport()
	err = r.s.withTx(ctx, func(tx *gorm.DB) error {
		pid, err := r.s.resolvePatient(tx, found.patient)
		if err != nil {
			return err
		}
		in, err := pass(true)
		if err != nil {
			return err
		}
		h2 := sha256.New()
		if err := r.s.storeBundle(tx, io.TeeReader(in, h2), r.opts.MaxResourceSize, r.file, found, pid, local); err != nil {
			return err
		}
		if !bytes.Equal(h1.Sum(nil), h2.Sum(nil)) {
			return reject(-1, "the file changed while it was imported: nothing imported")
		}
		return r.auditStored(tx, "import.bundle", "patient:"+pid, []string{pid}, local, 0, 0)
	})
	if err != nil {
		return r.storeErr(ctx, err)
	}
	r.rep.merge(local)
	r.rep.Stored++
	return nil
}

// storeChunkBytes bounds the checked entries held before they are written (besides one resource of at most
// MaxResourceSize): the second pass stores a bundle in chunks of about this size.
const storeChunkBytes = 4 << 20

// bundlePatient is what the first pass keeps of a bundle: its Patient and the references that name it.
type bundlePatient struct {
	patient *patientResource
	index   int             // the Patient's entry
	refs    map[string]bool // Patient/<id>, urn:uuid:<id>, its fullUrl
}

// scanBundle reads one Bundle, element by element of Bundle.entry, and calls fn with each entry. With strict,
// each entry is checked for duplicate and case-variant names and invalid UTF-8 (the second pass, which stores:
// the first only looks for the Patient, and leaves these refusals to it; the Bundle's own names are checked in
// both). Each entry is bounded by max (a larger one is refused
// after that many bytes, never held whole). It checks the Bundle's resourceType and type at the end (they
// may come after the entries).
func scanBundle(in io.Reader, max int64, strict bool, fn func(i int, e *bundleEntry) error) error {
	var rt, btype string
	n := 0
	// Each resource may take at most max bytes past where it starts (plus the decoder's read-ahead): a
	// larger one fails the read and refuses the bundle, never held whole.
	window := &windowReader{r: in}
	dec := json.NewDecoder(window)
	window.limit = max + readAhead
	tok, err := dec.Token()
	if err != nil {
		return rejectRead(-1, err, "not a FHIR Bundle: %s", jsonProblem(err))
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return reject(-1, "JSON but not FHIR: the file is not a JSON object")
	}
	seen := map[string]string{}
	for dec.More() {
		window.limit = dec.InputOffset() + max + readAhead
		tok, err := dec.Token()
		if err != nil {
			return rejectRead(-1, err, "%s", jsonProblem(err))
		}
		key, _ := tok.(string)
		if err := strictName(seen, key); err != nil {
			return err
		}
		switch key {
		case "resourceType":
			if err := dec.Decode(&rt); err != nil {
				return rejectRead(-1, err, "resourceType: %s", jsonProblem(err))
			}
		case "type":
			if err := dec.Decode(&btype); err != nil {
				return rejectRead(-1, err, "Bundle.type: %s", jsonProblem(err))
			}
		case "entry":
			if tok, err := dec.Token(); err != nil {
				return rejectRead(-1, err, "Bundle.entry: %s", jsonProblem(err))
			} else if d, ok := tok.(json.Delim); !ok || d != '[' {
				return reject(-1, "JSON but not FHIR: Bundle.entry is not a list")
			}
			for ; dec.More(); n++ {
				i := n
				window.limit = dec.InputOffset() + max + readAhead
				var raw json.RawMessage
				if err := dec.Decode(&raw); errors.Is(err, errResourceTooLarge) || int64(len(raw)) > max {
					return reject(i, "entry %d: larger than %d bytes, the limit for one resource (--max-resource-size): refused unread", i, max)
				} else if err != nil {
					return rejectRead(i, err, "entry %d: %s", i, jsonProblem(err))
				}
				var e bundleEntry
				if strict {
					if err := strictjson.Check(raw, entryNames...); err != nil {
						return reject(i, "entry %d: %s", i, jsonProblem(err))
					}
				}
				if err := json.Unmarshal(raw, &e); err != nil {
					return reject(i, "entry %d: %s", i, jsonProblem(err))
				}
				if err := fn(i, &e); err != nil {
					return err
				}
			}
			window.limit = dec.InputOffset() + max + readAhead
			if _, err := dec.Token(); err != nil {
				return rejectRead(n, err, "Bundle.entry: %s", jsonProblem(err))
			}
		default:
			var skip json.RawMessage
			if err := dec.Decode(&skip); errors.Is(err, errResourceTooLarge) {
				return reject(-1, "Bundle.%s: larger than %d bytes, the limit for one resource (--max-resource-size)", shortName(key), max)
			} else if err != nil {
				return rejectRead(-1, err, "%s", jsonProblem(err))
			}
			if err := strictjson.Check(skip); err != nil {
				return reject(-1, "Bundle.%s: %s", shortName(key), jsonProblem(err))
			}
		}
	}
	window.limit = dec.InputOffset() + max + readAhead
	if _, err := dec.Token(); err != nil {
		return rejectRead(-1, err, "%s", jsonProblem(err))
	}
	switch {
	case rt == "":
		return reject(-1, "JSON but not FHIR: no resourceType")
	case rt != "Bundle":
		return reject(-1, "a %s resource, not a Bundle: only Bundles (.json) and Bulk Data NDJSON (.ndjson) are imported", shortName(rt))
	case btype != "transaction" && btype != "batch" && btype != "collection":
		return reject(-1, "Bundle of type %q: only transaction, batch and collection bundles are imported", shortName(btype))
	}
	return nil
}

// headOf checks that an entry holds a FHIR resource and reads its head.
func headOf(i int, e *bundleEntry) (*resourceHead, error) {
	if len(e.Resource) == 0 || string(e.Resource) == "null" {
		return nil, reject(i, "entry %d: no resource", i)
	}
	var h resourceHead
	if err := decodeHead(e.Resource, &h); err != nil {
		return nil, reject(i, "entry %d: %s", i, jsonProblem(err))
	}
	if h.ResourceType == "" {
		return nil, reject(i, "entry %d: JSON but not a FHIR resource (no resourceType)", i)
	}
	return &h, nil
}

// findPatient is the first pass: the whole bundle is read and checked as a structure, and exactly one entry
// is the Patient, which is all it keeps.
func (s *Service) findPatient(in io.Reader, max int64) (*bundlePatient, error) {
	var out *bundlePatient
	patientURL := ""
	err := scanBundle(in, max, false, func(i int, e *bundleEntry) error {
		// Most exports write resourceType first: any other type is passed over undecoded (the second pass
		// checks it).
		if rt, ok := sniffType(e.Resource); ok && rt != "Patient" {
			return nil
		}
		h, err := headOf(i, e)
		if err != nil || h.ResourceType != "Patient" {
			return err
		}
		if out != nil {
			return reject(i, "entry %d: a second Patient (the first is entry %d): a bundle must hold exactly one", i, out.index)
		}
		var p patientResource
		if err := json.Unmarshal(e.Resource, &p); err != nil {
			return reject(i, "entry %d (Patient): %s", i, jsonProblem(err))
		}
		if p.ID == "" && e.FullURL == "" {
			return reject(i, "entry %d (Patient): neither id nor fullUrl", i)
		}
		if _, err := p.demographics(); err != nil {
			return reject(i, "entry %d (Patient): %v", i, err)
		}
		out, patientURL = &bundlePatient{patient: &p, index: i}, e.FullURL
		return nil
	})
	if err != nil {
		return nil, err
	}
	if out == nil {
		return nil, reject(-1, "no Patient in the bundle: its entries cannot be attached to anyone")
	}
	if out.patient.ID == "" {
		out.patient.ID = strings.TrimPrefix(patientURL, "urn:uuid:")
	}
	out.refs = map[string]bool{"Patient/" + out.patient.ID: true, "urn:uuid:" + out.patient.ID: true}
	if patientURL != "" {
		out.refs[patientURL] = true
	}
	return out, nil
}

// storeBundle is the second pass, inside the bundle's transaction: every kept entry is checked (id, date,
// about the bundle's Patient) and stored as patient pid, a chunk at a time; skipped types are counted.
func (s *Service) storeBundle(tx *gorm.DB, in io.Reader, max int64, file string, b *bundlePatient, pid string, rep *Report) error {
	var chunk []*pendingEntry
	size := 0
	flush := func() error {
		err := s.storeEntries(tx, file, chunk, rep)
		clear(chunk)
		chunk, size = chunk[:0], 0
		return err
	}
	err := scanBundle(in, max, true, func(i int, e *bundleEntry) error {
		h, err := headOf(i, e)
		if err != nil {
			return err
		}
		if h.ResourceType == "Patient" {
			if i != b.index {
				return reject(i, "entry %d: a second Patient (the first is entry %d): a bundle must hold exactly one", i, b.index)
			}
			return nil
		}
		if _, kept := CategoryOf(h.ResourceType); !kept {
			rep.Skipped[shortName(h.ResourceType)]++
			return nil
		}
		pe, err := readEntry(i, e.Resource, h)
		if err != nil {
			return err
		}
		if !b.refs[pe.patientRef] {
			return reject(i, "entry %d (%s): refers to a patient that is not the bundle's Patient", i, h.ResourceType)
		}
		pe.patientRef = pid
		chunk = append(chunk, pe)
		if size += len(pe.resource); size >= storeChunkBytes || len(chunk) >= 500 {
			return flush()
		}
		return nil
	})
	if err != nil {
		return err
	}
	return flush()
}

// strictName refuses a top-level Bundle name seen before (two "entry" arrays would both be read) or a case
// variant of one the import reads: encoding/json would match "Entry" to entry.
func strictName(seen map[string]string, key string) error {
	lower := strings.ToLower(key)
	if prev, ok := seen[lower]; ok {
		if prev == key {
			return reject(-1, "duplicate name %q at the top level of the Bundle", shortName(key))
		}
		return reject(-1, "names %q and %q differ only by case at the top level of the Bundle", shortName(prev), shortName(key))
	}
	seen[lower] = key
	for _, n := range bundleNames {
		if strings.EqualFold(n, key) && n != key {
			return reject(-1, "%q is not a name; did you mean %q? (names are case-sensitive)", shortName(key), n)
		}
	}
	return nil
}
