package records_test

import (
	"testing"

	"gatewayd/gateway/records"
)

func TestCanonical(t *testing.T) {
	cases := []struct{ in, want string }{
		{`{"id":"a", "resourceType":"Observation","b":{"z":1,"a":[true,null,1.50]}}`,
			`{"resourceType":"Observation","b":{"a":[true,null,1.50],"z":1},"id":"a"}`},
		{"{\n  \"resourceType\": \"Patient\",\n  \"name\": \"<Ana & Zoé>\\n\\u0001\"\n}",
			`{"resourceType":"Patient","name":"<Ana & Zoé>\n\u0001"}`},
		{`{"value": 185.8289545670521e0, "deep": {"resourceType": "x", "a": 1}}`,
			`{"deep":{"a":1,"resourceType":"x"},"value":185.8289545670521e0}`},
	}
	for _, c := range cases {
		got, err := records.Canonical([]byte(c.in))
		if err != nil {
			t.Fatalf("%s: %v", c.in, err)
		}
		if string(got) != c.want {
			t.Errorf("Canonical(%s)\n got %s\nwant %s", c.in, got, c.want)
		}
		again, _ := records.Canonical(got)
		if string(again) != string(got) {
			t.Errorf("not idempotent: %s", again)
		}
	}
	for _, bad := range []string{`[1]`, `{"a":`, `{"a":1} {"b":2}`, `"x"`} {
		if _, err := records.Canonical([]byte(bad)); err == nil {
			t.Errorf("Canonical(%s) accepted", bad)
		}
	}
}
