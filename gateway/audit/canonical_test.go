package audit_test

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"gatewayd/gateway/audit"
)

// TestCanonicalIsEncodingJSON holds Canonical, written by hand, to the canonical form the package comment
// defines (encoding/json's output for the fields in order, no HTML escaping), on plain and awkward values:
// every stored hash depends on these bytes.
func TestCanonicalIsEncodingJSON(t *testing.T) {
	encoder := func(r audit.Row) ([]byte, error) {
		if !json.Valid([]byte(r.Details)) {
			return nil, errInvalid
		}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		err := enc.Encode(struct {
			Seq     int64           `json:"seq"`
			At      string          `json:"at"`
			Actor   string          `json:"actor"`
			Action  string          `json:"action"`
			Subject string          `json:"subject"`
			Details json.RawMessage `json:"details"`
		}{r.Seq, r.At.UTC().Format(audit.TimeLayout), r.Actor, r.Action, r.Subject, json.RawMessage(r.Details)})
		return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), err
	}
	at := time.Date(2026, 11, 30, 23, 59, 59, 123456000, time.FixedZone("x", 3600))
	strs := []string{"", "user:off1", "request:0123-abcd", `quote " and \ backslash`, "<script>&amp;</script>",
		"tab\there\nnew\rline\x00\x1f\x7f", "é ü 日本", "\u2028\u2029", "bad \xff\xfe utf-8", "\b\f"}
	details := []string{"{}", `{"a":1,"b":"<&>"}`, ` { "a" : [ 1 , 2 ] , "b" : "x y" } `, `{"s":"\u2028 \ud83d\ude00 é"}`,
		"{\"bad\":\"\xff\"}", "", "{", `{"a":1}x`, "null", `"str"`}
	for _, s := range strs {
		for _, d := range details {
			r := audit.Row{Seq: 42, At: at, Actor: s, Action: "x." + s, Subject: s + ":1", Details: d}
			got, gerr := audit.Canonical(r)
			want, werr := encoder(r)
			if (gerr == nil) != (werr == nil) || !bytes.Equal(got, want) {
				t.Errorf("actor %q details %q:\n got %s (%v)\nwant %s (%v)", s, d, got, gerr, want, werr)
			}
		}
	}
}

var errInvalid = json.Unmarshal([]byte("{"), new(any))
