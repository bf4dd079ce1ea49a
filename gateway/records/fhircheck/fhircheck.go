// Package fhircheck checks a rendered FHIR R4 Bundle the way a receiving system would, for tests: it
// validates the Bundle against the official FHIR R4 JSON Schema (embedded, see README) and lists the
// references inside it that resolve to none of its entries. Only tests import it, so the schema never
// enters the gatewayd binary.
package fhircheck

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"gatewayd/gateway/records"
)

//go:embed fhir.schema.json.gz
var schemaGz []byte

// schema is the official FHIR R4 JSON Schema, compiled once.
var schema = sync.OnceValues(func() (*jsonschema.Schema, error) {
	z, err := gzip.NewReader(bytes.NewReader(schemaGz))
	if err != nil {
		return nil, err
	}
	doc, err := jsonschema.UnmarshalJSON(z)
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("fhir.schema.json", doc); err != nil {
		return nil, err
	}
	return c.Compile("fhir.schema.json")
})

// Validate reports whether bundle is valid FHIR R4 JSON.
func Validate(bundle []byte) error {
	s, err := schema()
	if err != nil {
		return fmt.Errorf("compile the FHIR R4 schema: %w", err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(bundle))
	if err != nil {
		return err
	}
	return s.Validate(doc)
}

// Unresolved returns, for each entry (by index), the references it holds that name no entry's fullUrl, and
// the number of references that do resolve. Contained references ("#id") are local to their resource and
// not counted.
func Unresolved(bundle []byte) (unresolved map[int][]string, resolved int, err error) {
	var b struct {
		Entry []struct {
			FullURL  string          `json:"fullUrl"`
			Resource json.RawMessage `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(bundle, &b); err != nil {
		return nil, 0, err
	}
	entries := b.Entry
	full := map[string]bool{}
	for _, e := range entries {
		full[e.FullURL] = true
	}
	unresolved = map[int][]string{}
	for i, e := range entries {
		var v any
		if err := json.Unmarshal(e.Resource, &v); err != nil {
			return nil, 0, fmt.Errorf("entry %d: %w", i, err)
		}
		eachReference(v, func(ref string) {
			if full[ref] {
				resolved++
			} else {
				unresolved[i] = append(unresolved[i], ref)
			}
		})
	}
	return unresolved, resolved, nil
}

// eachReference calls fn with every "reference" string of a decoded resource (contained "#id" excepted).
func eachReference(v any, fn func(string)) {
	switch x := v.(type) {
	case map[string]any:
		if r, ok := x["reference"].(string); ok && !strings.HasPrefix(r, "#") {
			fn(r)
		}
		for _, e := range x {
			eachReference(e, fn)
		}
	case []any:
		for _, e := range x {
			eachReference(e, fn)
		}
	}
}

// Entry is one entry of a downloaded Bundle, as a recipient reads it.
type Entry struct {
	Extension []struct {
		URL         string `json:"url"`
		ValueString string `json:"valueString"`
	} `json:"extension"`
	FullURL  string          `json:"fullUrl"`
	Resource json.RawMessage `json:"resource"`
}

// ContentHash recomputes the entry's content hash as a recipient does: the references the render rewrote
// are put back from the entry's extensions (records.RestoreResource), then SHA-256 of those bytes, in hex.
func (e Entry) ContentHash() (string, error) {
	var originals []string
	for _, x := range e.Extension {
		if x.URL == records.OriginalReference {
			originals = append(originals, x.ValueString)
		}
	}
	res := []byte(e.Resource)
	if len(originals) > 0 {
		var err error
		if res, err = records.RestoreResource(res, originals); err != nil {
			return "", err
		}
	}
	sum := sha256.Sum256(res)
	return hex.EncodeToString(sum[:]), nil
}
