package records

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"unicode/utf8"
)

// Canonical returns the canonical JSON form of a resource, which is what is stored, what the content hash
// covers and what a rendered Bundle emits, byte for byte. Version 1:
//
//   - no insignificant whitespace;
//   - object members sorted by key (bytewise), at every level, except that a top-level "resourceType" comes
//     first (FHIR readers look for it there);
//   - numbers exactly as written in the source (1.0 stays 1.0, 185.8289545670521 keeps every digit);
//   - strings with only '"', '\\' and control characters escaped (\b \f \n \r \t, others \u00XX), everything
//     else as UTF-8, invalid UTF-8 replaced by U+FFFD;
//   - true, false, null as themselves.
//
// So the same resource re-exported with another member order or spacing is the same content, and is not
// stored again.
func Canonical(raw []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("trailing data after the JSON value")
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("a resource must be a JSON object")
	}
	out := make([]byte, 0, len(raw))
	return appendObject(out, obj, true), nil
}

func appendValue(b []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...)
	case bool:
		return strconv.AppendBool(b, x)
	case json.Number:
		return append(b, x...)
	case string:
		return appendString(b, x)
	case []any:
		b = append(b, '[')
		for i, e := range x {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendValue(b, e)
		}
		return append(b, ']')
	case map[string]any:
		return appendObject(b, x, false)
	}
	panic(fmt.Sprintf("canonical: unexpected %T", v))
}

func appendObject(b []byte, m map[string]any, top bool) []byte {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if rt, ok := m["resourceType"]; top && ok {
		b = append(b, `{"resourceType":`...)
		b = appendValue(b, rt)
		for _, k := range keys {
			if k == "resourceType" {
				continue
			}
			b = append(b, ',')
			b = appendString(b, k)
			b = append(b, ':')
			b = appendValue(b, m[k])
		}
		return append(b, '}')
	}
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, k)
		b = append(b, ':')
		b = appendValue(b, m[k])
	}
	return append(b, '}')
}

const hexDigits = "0123456789abcdef"

func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\b':
				b = append(b, '\\', 'b')
			case c == '\f':
				b = append(b, '\\', 'f')
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, "\ufffd"...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
