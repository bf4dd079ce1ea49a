package records

import (
	"context"
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

// importBundle reads one Bundle, element by element of Bundle.entry, then stores it in one transaction. Each
// entry is bounded by MaxResourceSize (a larger one is refused after that many bytes, never held whole); the
// entries of one bundle are held in memory until it is stored (the Patient may come last), which the file
// size limit bounds; a Synthea bundle is well under 1 MB.
func (r *importRun) importBundle(ctx context.Context, in io.Reader) error {
	var rt, btype string
	var entries []bundleEntry
	// Each resource may take at most MaxResourceSize bytes past where it starts (plus the decoder's
	// read-ahead): a larger one fails the read and refuses the bundle, never held whole.
	window := &windowReader{r: in}
	max := r.opts.MaxResourceSize
	err := func() error {
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
				for i := 0; dec.More(); i++ {
					window.limit = dec.InputOffset() + max + readAhead
					var raw json.RawMessage
					if err := dec.Decode(&raw); errors.Is(err, errResourceTooLarge) || int64(len(raw)) > max {
						return reject(i, "entry %d: larger than %d bytes, the limit for one resource (--max-resource-size): refused unread", i, max)
					} else if err != nil {
						return rejectRead(i, err, "entry %d: %s", i, jsonProblem(err))
					}
					var e bundleEntry
					if err := strictjson.Check(raw, entryNames...); err != nil {
						return reject(i, "entry %d: %s", i, jsonProblem(err))
					}
					if err := json.Unmarshal(raw, &e); err != nil {
						return reject(i, "entry %d: %s", i, jsonProblem(err))
					}
					entries = append(entries, e)
				}
				window.limit = dec.InputOffset() + max + readAhead
				if _, err := dec.Token(); err != nil {
					return rejectRead(len(entries), err, "Bundle.entry: %s", jsonProblem(err))
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
		return nil
	}()
	if err != nil {
		return r.storeErr(ctx, err)
	}
	switch {
	case rt == "":
		return r.storeErr(ctx, reject(-1, "JSON but not FHIR: no resourceType"))
	case rt != "Bundle":
		return r.storeErr(ctx, reject(-1, "a %s resource, not a Bundle: only Bundles (.json) and Bulk Data NDJSON (.ndjson) are imported", shortName(rt)))
	case btype != "transaction" && btype != "batch" && btype != "collection":
		return r.storeErr(ctx, reject(-1, "Bundle of type %q: only transaction, batch and collection bundles are imported", shortName(btype)))
	}
	local, err := r.s.prepareBundle(entries)
	if err != nil {
		return r.storeErr(ctx, err)
	}
	err = r.s.withTx(ctx, func(tx *gorm.DB) error {
		pid, err := r.s.resolvePatient(tx, local.patient)
		if err != nil {
			return err
		}
		for _, e := range local.entries {
			e.patientRef = pid
		}
		if err := r.s.storeEntries(tx, r.file, local.entries, local.rep); err != nil {
			return err
		}
		return r.auditStored(tx, "import.bundle", "patient:"+pid, []string{pid}, local.rep, 0, 0)
	})
	if err != nil {
		return r.storeErr(ctx, err)
	}
	r.rep.merge(local.rep)
	r.rep.Stored++
	return nil
}

type preparedBundle struct {
	patient *patientResource
	entries []*pendingEntry
	rep     *Report
}

// prepareBundle checks a bundle whole before anything is stored: exactly one Patient, every kept resource
// about that Patient, every date valid.
func (s *Service) prepareBundle(entries []bundleEntry) (*preparedBundle, error) {
	out := &preparedBundle{rep: newReport()}
	patientIndex, patientURL := -1, ""
	heads := make([]*resourceHead, len(entries))
	for i, e := range entries {
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
		heads[i] = &h
		if h.ResourceType != "Patient" {
			continue
		}
		if out.patient != nil {
			return nil, reject(i, "entry %d: a second Patient (the first is entry %d): a bundle must hold exactly one", i, patientIndex)
		}
		var p patientResource
		if err := json.Unmarshal(e.Resource, &p); err != nil {
			return nil, reject(i, "entry %d (Patient): %s", i, jsonProblem(err))
		}
		if p.ID == "" && e.FullURL == "" {
			return nil, reject(i, "entry %d (Patient): neither id nor fullUrl", i)
		}
		if _, err := p.demographics(); err != nil {
			return nil, reject(i, "entry %d (Patient): %v", i, err)
		}
		out.patient, patientIndex, patientURL = &p, i, e.FullURL
	}
	if out.patient == nil {
		return nil, reject(-1, "no Patient in the bundle: its entries cannot be attached to anyone")
	}
	if out.patient.ID == "" {
		out.patient.ID = strings.TrimPrefix(patientURL, "urn:uuid:")
	}
	refs := map[string]bool{"Patient/" + out.patient.ID: true, "urn:uuid:" + out.patient.ID: true}
	if patientURL != "" {
		refs[patientURL] = true
	}
	for i, h := range heads {
		if h.ResourceType == "Patient" {
			continue
		}
		if _, kept := CategoryOf(h.ResourceType); !kept {
			out.rep.Skipped[shortName(h.ResourceType)]++
			continue
		}
		pe, err := readEntry(i, entries[i].Resource, h)
		if err != nil {
			return nil, err
		}
		if !refs[pe.patientRef] {
			return nil, reject(i, "entry %d (%s): refers to a patient that is not the bundle's Patient", i, h.ResourceType)
		}
		out.entries = append(out.entries, pe)
	}
	return out, nil
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
