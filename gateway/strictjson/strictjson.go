// Package strictjson checks JSON that comes from outside (FHIR files, API bodies, receipts) before anything
// reads it: Go's encoding/json matches names case-insensitively, keeps the last of duplicate names and
// replaces invalid UTF-8, so `"subject":…,"Subject":…` would pass one check and be stored with both. Check
// refuses all three, naming the place (a JSON pointer of element names, never a value). It streams the value
// with go-json-experiment/json's jsontext (JSON v2 semantics), holding one object's names at a time.
package strictjson

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"

	"github.com/go-json-experiment/json/jsontext"
)

// Error is a refusal: Where is a JSON pointer ("" for the whole value), Reason says what is wrong.
type Error struct {
	Where  string
	Reason string
}

func (e *Error) Error() string {
	if e.Where == "" {
		return e.Reason
	}
	return e.Reason + " at " + e.Where
}

// Check reads exactly one JSON value from data and refuses duplicate names, names of one object that differ
// only by case ("subject" and "Subject"), a name of known (the names its reader looks for, at any depth: see
// Names) written in another case, invalid UTF-8 and anything after the value.
func Check(data []byte, known ...string) error {
	return CheckReader(bytes.NewReader(data), known...)
}

// CheckReader is Check over a stream.
func CheckReader(r io.Reader, known ...string) error {
	canon := make(map[string]string, len(known))
	for _, k := range known {
		canon[strings.ToLower(k)] = k
	}
	dec := jsontext.NewDecoder(r)
	// Per open object: lower-cased name → name as written. The maps of closed objects are kept and cleared
	// for the next object at their depth: a FHIR resource holds thousands of small objects.
	var names []map[string]string
	var spare []map[string]string
	for {
		tok, err := dec.ReadToken()
		if errors.Is(err, io.EOF) {
			if dec.InputOffset() == 0 {
				return &Error{Reason: "empty input: no JSON value"}
			}
			return nil
		}
		if err != nil {
			return describe(err)
		}
		switch tok.Kind() {
		case '{':
			if n := len(spare); n > 0 {
				names, spare = append(names, spare[n-1]), spare[:n-1]
			} else {
				names = append(names, map[string]string{})
			}
		case '}':
			m := names[len(names)-1]
			clear(m)
			names, spare = names[:len(names)-1], append(spare, m)
		case '"':
			depth := dec.StackDepth()
			kind, n := dec.StackIndex(depth)
			if kind != '{' || n%2 != 1 {
				continue // a value, not a name
			}
			name := tok.String()
			lower := strings.ToLower(name)
			if prev, ok := names[len(names)-1][lower]; ok {
				return &Error{Where: pointer(dec.StackPointer().Parent()),
					Reason: fmt.Sprintf("names %q and %q differ only by case", prev, name)}
			}
			names[len(names)-1][lower] = name
			if want, ok := canon[lower]; ok && want != name {
				return &Error{Where: pointer(dec.StackPointer().Parent()),
					Reason: fmt.Sprintf("%q is not a name; did you mean %q? (names are case-sensitive)", name, want)}
			}
		}
		if len(names) == 0 && dec.StackDepth() == 0 {
			// One value read: anything but white space after it is refused.
			if _, err := dec.ReadToken(); !errors.Is(err, io.EOF) {
				return &Error{Reason: "more than one JSON value"}
			}
			return nil
		}
	}
}

// describe words a jsontext error with its place and without any value.
func describe(err error) error {
	var se *jsontext.SyntacticError
	if !errors.As(err, &se) {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return &Error{Reason: "truncated JSON (the value ends in the middle)"}
		}
		return &Error{Reason: "invalid JSON"}
	}
	where := pointer(se.JSONPointer)
	switch {
	case errors.Is(se.Err, jsontext.ErrDuplicateName):
		return &Error{Where: pointer(se.JSONPointer.Parent()), Reason: fmt.Sprintf("duplicate name %q", se.JSONPointer.LastToken())}
	case se.Err != nil && strings.Contains(se.Err.Error(), "UTF-8"):
		return &Error{Where: where, Reason: "invalid UTF-8"}
	case errors.Is(se.Err, io.ErrUnexpectedEOF):
		return &Error{Where: where, Reason: "truncated JSON (the value ends in the middle)"}
	}
	return &Error{Where: where, Reason: fmt.Sprintf("invalid JSON after byte %d", se.ByteOffset)}
}

// Names lists the JSON names of v's struct type and of the structs it holds (fields, pointers, slices, maps),
// for Check's known: what a reader of v looks for, so that a case variant of one is refused, not ignored.
func Names(v any) []string {
	seen := map[reflect.Type]bool{}
	var out []string
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Array || t.Kind() == reflect.Map {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || seen[t] {
			return
		}
		seen[t] = true
		for f := range t.Fields() {
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" {
				continue
			}
			if name == "" && !f.Anonymous {
				name = f.Name
			}
			if name != "" {
				out = append(out, name)
			}
			walk(f.Type)
		}
	}
	walk(reflect.TypeOf(v))
	return out
}

func pointer(p jsontext.Pointer) string {
	if p == "" {
		return "the top level"
	}
	return string(p)
}
