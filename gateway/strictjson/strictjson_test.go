package strictjson_test

import (
	"strings"
	"testing"

	"gatewayd/gateway/strictjson"
)

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		known    []string
	}{
		{in: `{"a":1,"b":[{"c":"d"}]}`},
		{in: ` {"resourceType":"Observation"} `, known: []string{"resourceType"}},
		{in: `{"a":1,"a":2}`, want: `duplicate name "a" at the top level`},
		{in: `{"x":{"subject":1,"Subject":2}}`, want: `names "subject" and "Subject" differ only by case at /x`},
		{in: `{"Subject":{}}`, known: []string{"subject"}, want: `"Subject" is not a name; did you mean "subject"?`},
		{in: `{"x":[{"Subject":{}}]}`, known: []string{"subject"}, want: `did you mean "subject"? (names are case-sensitive) at /x/0`},
		{in: "{\"a\":\"\xff\"}", want: "invalid UTF-8 at /a"},
		{in: `{"entry":[1],"entry":[2]}`, want: `duplicate name "entry"`},
		{in: `{"a":1} {"b":2}`, want: "more than one JSON value"},
		{in: `{"a":`, want: "truncated JSON"},
		{in: ``, want: "empty input"},
	} {
		err := strictjson.Check([]byte(tc.in), tc.known...)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("Check(%q) = %v, want %q", tc.in, err, tc.want)
		}
	}
}

func TestNames(t *testing.T) {
	type inner struct {
		System string `json:"system"`
	}
	var v struct {
		ID   string  `json:"id"`
		List []inner `json:"identifier"`
		Skip string  `json:"-"`
		P    *inner  `json:"p,omitempty"`
	}
	if got := strings.Join(strictjson.Names(v), ","); got != "id,identifier,system,p" {
		t.Fatalf("Names = %s", got)
	}
}
