package approvals_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"gatewayd/approvals"
)

// FuzzParseDecision: whatever bytes are offered as a canonical decision, ParseDecision either refuses them or
// returns a decision whose canonical form is exactly those bytes (one byte form per decision).
func FuzzParseDecision(f *testing.F) {
	c, err := sampleDecision().Canonical()
	must(f, err)
	f.Add(c)
	f.Add([]byte(`{"format":2}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := approvals.ParseDecision(b)
		if err != nil {
			if !errors.Is(err, approvals.ErrNotCanonical) {
				t.Fatalf("refusal that is not ErrNotCanonical: %v", err)
			}
			return
		}
		again, err := d.Canonical()
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("accepted a non-canonical form: %q -> %q (%v)", b, again, err)
		}
	})
}

// FuzzVerifyReceipt: a receipt file, any bytes. It never panics; a receipt that verifies holds a canonical
// decision whose decision id and shown digest are the receipt's, and changing its signature breaks it.
func FuzzVerifyReceipt(f *testing.F) {
	good, err := json.Marshal(signedReceipt(f))
	must(f, err)
	f.Add(good)
	f.Add([]byte(`{"format":"gatewayd-receipt/2","decision":"{}"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var rc approvals.Receipt
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if dec.Decode(&rc) != nil {
			return
		}
		d, err := approvals.VerifyReceipt(rc)
		if err != nil {
			if !errors.Is(err, approvals.ErrReceipt) {
				t.Fatalf("refusal that is not ErrReceipt: %v", err)
			}
			return
		}
		if d.DecisionID != rc.DecisionID || d.ShownSHA256 != approvals.ShownDigest(rc.Shown) {
			t.Fatalf("verified a receipt whose id or shown text the decision does not sign")
		}
		if len(rc.Signature) > 0 {
			rc.Signature = append([]byte{}, rc.Signature...)
			rc.Signature[len(rc.Signature)-1] ^= 1
			if _, err := approvals.VerifyReceipt(rc); err == nil {
				t.Fatalf("a changed signature still verifies")
			}
		}
	})
}
