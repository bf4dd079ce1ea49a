package fhircheck

import "testing"

// The checks can fail: a dangling reference is reported, a contained one is not, and an invalid Bundle is
// refused by the schema.
func TestChecksCanFail(t *testing.T) {
	b := []byte(`{"resourceType":"Bundle","type":"collection","entry":[
		{"fullUrl":"urn:uuid:a","resource":{"resourceType":"Patient","id":"a"}},
		{"fullUrl":"urn:uuid:b","resource":{"resourceType":"Observation","id":"b","status":"final",
			"code":{"text":"x"},"subject":{"reference":"urn:uuid:a"},"encounter":{"reference":"urn:uuid:gone"},
			"performer":[{"reference":"#p"}]}}]}`)
	unresolved, resolved, err := Unresolved(b)
	if err != nil {
		t.Fatal(err)
	}
	if resolved != 1 || len(unresolved) != 1 || len(unresolved[1]) != 1 || unresolved[1][0] != "urn:uuid:gone" {
		t.Fatalf("resolved %d, unresolved %v", resolved, unresolved)
	}
	if err := Validate(b); err != nil {
		t.Fatalf("a valid Bundle refused: %v", err)
	}
	if Validate([]byte(`{"resourceType":"Bundle","type":"pile"}`)) == nil {
		t.Fatal("a Bundle of type pile accepted")
	}
}
