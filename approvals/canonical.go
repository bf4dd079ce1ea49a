package approvals

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Verdicts of a decision.
const (
	Approve = "approve"
	Deny    = "deny"
	// NothingRecorded answers that the signed scope holds no entry: nothing is released, no extract is made.
	NothingRecorded = "nothing_recorded"
)

// DecisionFormat is the version of the canonical form below. Version 2 added decision_id, shown_sha256 and
// audit_anchor, so that everything a receipt prints is signed.
const DecisionFormat = 2

// Decision is what an officer signs. Its canonical form (Canonical), version 2, is the output of
// encoding/json for this struct — fields in exactly this order, no spaces, no trailing newline, HTML
// characters not escaped — with:
//
//		{"format":2,"decision_id":"<hex id>","request_id":"<hex id>","officer_id":"<user id>",
//		 "verdict":"approve"|"deny"|"nothing_recorded",
//		 "scope":{"patient":{"system":"...","value":"..."},"categories":["...",...],
//		          "period":{"from":"YYYY-MM-DD"|"","to":"YYYY-MM-DD"|""},"purpose":"<purpose code>"},
//		 "manifest_digest":"<64 hex>"|"","retriever":{"kind":"requester"|"staff","user_id":"..."|""}|null,
//		 "expires_at":"YYYY-MM-DDTHH:MM:SSZ"|"","issued_at":"YYYY-MM-DDTHH:MM:SSZ",
//		 "nonce":"<base64url, no padding, of 32 bytes>","wording_version":"...",
//		 "shown_sha256":"<64 hex>","audit_anchor":{"seq":N,"hash":"<64 hex>"},"reason":"..."
//		 [,"identity_override":{"differs":["birth_name"|"given_name"|"birth_date"|"sex",...],"reason":"..."}]
//		 [,"emergency":true]}
//
//	  - decision_id is the id the gateway gives the decision (and its receipt);
//	  - issued_at is the preparation time: when the officer's choice was checked and the signature asked;
//	  - shown_sha256 is the SHA-256, lower-case hex, of the exact UTF-8 text the review page showed the officer
//	    (the receipt's "shown");
//	  - audit_anchor is the audit chain's head at preparation (seq 0 and 64 zeros for an empty chain);
//	  - categories are sorted (byte order) without duplicates; an empty period bound is "" (open);
//	  - times are UTC, whole seconds, RFC 3339 with "Z";
//	  - a denial has scope = the requested scope, manifest_digest "", retriever null, expires_at "" and a reason;
//	    an approval has reason "";
//	  - "nothing recorded" has the scope it answers for, the digest of the empty manifest, retriever null,
//	    expires_at "" and reason "";
//	  - the nonce is the same 32 bytes that open the WebAuthn challenge;
//	  - identity_override is absent unless an approval overrides identity traits that differ from the records'
//	    Patient: it names those traits (in the order birth_name, given_name, birth_date, sex) and holds the
//	    officer's reason. A decision without it keeps exactly its earlier bytes; a verifier that does not
//	    know the member refuses it rather than ignore it (unknown fields are refused).
//	  - "emergency":true closes an approval released under the emergency rules (absent otherwise).
//
// The WebAuthn challenge is nonce || SHA-256(canonical): 64 bytes.
type Decision struct {
	Format         int             `json:"format"`
	DecisionID     string          `json:"decision_id"`
	RequestID      string          `json:"request_id"`
	OfficerID      string          `json:"officer_id"`
	Verdict        string          `json:"verdict"`
	Scope          CanonicalScope  `json:"scope"`
	ManifestDigest string          `json:"manifest_digest"`
	Retriever      *RetrieverField `json:"retriever"`
	ExpiresAt      string          `json:"expires_at"`
	IssuedAt       string          `json:"issued_at"`
	Nonce          string          `json:"nonce"`
	WordingVersion string          `json:"wording_version"`
	ShownSHA256    string          `json:"shown_sha256"`
	AuditAnchor    AuditAnchor     `json:"audit_anchor"`
	Reason         string          `json:"reason"`
	// IdentityOverride is present only in an approval signed although identity traits differed.
	IdentityOverride *IdentityOverride `json:"identity_override,omitempty"`
	// Emergency is set on an approval that uses the emergency privileges (one signature, the short expiry,
	// the IPS-shaped extract, a post-hoc review); absent otherwise, so earlier receipts keep their bytes.
	Emergency bool `json:"emergency,omitempty"`
}

// AuditAnchor is a position of the audit chain as it is signed: a row's seq and hash.
type AuditAnchor struct {
	Seq  int64  `json:"seq"`
	Hash string `json:"hash"`
}

// CanonicalScope is a scope as it is signed.
type CanonicalScope struct {
	Patient    Identifier `json:"patient"`
	Categories []Category `json:"categories"`
	Period     Period     `json:"period"`
	Purpose    Purpose    `json:"purpose"`
}

// RetrieverField names who may retrieve the extract; UserID is empty for staff (any staff member).
type RetrieverField struct {
	Kind   RetrieverKind `json:"kind"`
	UserID string        `json:"user_id"`
}

// TimeFormat is the layout of times in the canonical form.
const TimeFormat = "2006-01-02T15:04:05Z"

func canonicalScope(s Scope) CanonicalScope {
	s = s.normalized()
	if s.Categories == nil {
		s.Categories = []Category{}
	}
	return CanonicalScope(s)
}

// Scope returns the signed scope as a Scope.
func (c CanonicalScope) Scope() Scope {
	return Scope{Patient: c.Patient, Categories: slices.Clone(c.Categories), Period: c.Period, Purpose: c.Purpose}
}

// Canonical returns the exact bytes of the decision's canonical form.
func (d Decision) Canonical() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(d); err != nil {
		return nil, fmt.Errorf("canonical decision: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// ErrNotCanonical is returned when bytes claimed to be a canonical decision are not exactly what Canonical
// would write for their content.
var ErrNotCanonical = errors.New("decision is not in canonical form")

// ParseDecision reads a canonical decision and checks that it is canonical: unknown fields, a reordering, a
// space or unsorted categories are refused, so that a decision has exactly one byte form.
func ParseDecision(b []byte) (Decision, error) {
	var d Decision
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return Decision{}, fmt.Errorf("%w: %v", ErrNotCanonical, err)
	}
	again, err := d.Canonical()
	if err != nil {
		return Decision{}, err
	}
	if !bytes.Equal(again, b) {
		return Decision{}, ErrNotCanonical
	}
	if d.Format != DecisionFormat {
		return Decision{}, fmt.Errorf("%w: format %d is not %d", ErrNotCanonical, d.Format, DecisionFormat)
	}
	if o := d.IdentityOverride; o != nil && (d.Verdict != Approve || len(o.Differs) == 0 || o.Reason == "") {
		return Decision{}, fmt.Errorf("%w: identity_override without differing traits, reason or approval", ErrNotCanonical)
	}
	if !slices.IsSorted(d.Scope.Categories) || len(slices.Compact(slices.Clone(d.Scope.Categories))) != len(d.Scope.Categories) {
		return Decision{}, fmt.Errorf("%w: categories not sorted", ErrNotCanonical)
	}
	return d, nil
}

// NonceBytes decodes the decision's nonce.
func (d Decision) NonceBytes() ([]byte, error) {
	n, err := base64.RawURLEncoding.DecodeString(d.Nonce)
	if err != nil || len(n) != NonceSize {
		return nil, fmt.Errorf("%w: nonce is not %d bytes of base64url", ErrNotCanonical, NonceSize)
	}
	return n, nil
}

// NonceSize is the length of a decision's random nonce.
const NonceSize = 32

// Challenge returns the WebAuthn challenge for a canonical decision and its nonce: nonce || SHA-256(canonical).
func Challenge(nonce, canonical []byte) []byte {
	sum := sha256.Sum256(canonical)
	out := make([]byte, 0, len(nonce)+len(sum))
	return append(append(out, nonce...), sum[:]...)
}

// ManifestDigest is the SHA-256, in lower-case hex, of "gatewayd-manifest-v1\n" followed by the manifest's
// entries sorted by id (bytewise) then version, each written as "<id> <version> <content hash>\n". Category,
// date and display are left out: the content hash covers them. It is the same form as gateway/records'
// ManifestDigest (the gateway's adapter hands records' digest over, and PrepareDecision refuses a mismatch), so
// the digest an officer signs is the one the records side documents.
func ManifestDigest(entries []ManifestEntry) string {
	es := slices.Clone(entries)
	slices.SortFunc(es, func(a, b ManifestEntry) int {
		if c := strings.Compare(a.ID, b.ID); c != 0 {
			return c
		}
		return a.Version - b.Version
	})
	h := sha256.New()
	h.Write([]byte("gatewayd-manifest-v1\n"))
	for _, e := range es {
		h.Write([]byte(e.ID + " " + strconv.Itoa(e.Version) + " " + e.ContentHash + "\n"))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Summary says in plain words what a decision decided.
func (d Decision) Summary() string {
	var b strings.Builder
	issued := d.IssuedAt
	if t, err := time.Parse(TimeFormat, d.IssuedAt); err == nil {
		issued = t.Format("2006-01-02 15:04 UTC")
	}
	verb := "APPROVED"
	switch d.Verdict {
	case Deny:
		verb = "DENIED"
	case NothingRecorded:
		verb = "ANSWERED NOTHING RECORDED to"
	}
	fmt.Fprintf(&b, "Decision %s: officer %s %s request %s (prepared %s).\n", d.DecisionID, d.OfficerID, verb, d.RequestID, issued)
	fmt.Fprintf(&b, "Patient: %s | %s\n", d.Scope.Patient.System, d.Scope.Patient.Value)
	cs := make([]string, len(d.Scope.Categories))
	for i, c := range d.Scope.Categories {
		cs[i] = string(c)
	}
	fmt.Fprintf(&b, "Categories: %s\n", strings.Join(cs, ", "))
	switch p := d.Scope.Period; {
	case p.IsZero():
		b.WriteString("Care period: any\n")
	default:
		fmt.Fprintf(&b, "Care period: from %s to %s\n", orOpen(p.From), orOpen(p.To))
	}
	fmt.Fprintf(&b, "Purpose: %s\n", d.Scope.Purpose)
	switch d.Verdict {
	case Deny:
		fmt.Fprintf(&b, "Reason: %s\n", d.Reason)
	case NothingRecorded:
		fmt.Fprintf(&b, "Entries in scope: none (manifest digest %s)\n", d.ManifestDigest)
	default:
		who := "hospital staff (console)"
		if d.Retriever != nil && d.Retriever.Kind == ToRequester {
			who = "the requester, user " + d.Retriever.UserID + " (intake)"
		}
		fmt.Fprintf(&b, "Released once to: %s\n", who)
		fmt.Fprintf(&b, "Expires: %s\n", d.ExpiresAt)
		fmt.Fprintf(&b, "Manifest digest: %s\n", d.ManifestDigest)
		if o := d.IdentityOverride; o != nil {
			fmt.Fprintf(&b, "IDENTITY OVERRIDE: approved although these identity traits differ from the records: %s\n",
				strings.Join(o.Differs, ", "))
			fmt.Fprintf(&b, "Override reason: %s\n", o.Reason)
		}
		if d.Emergency {
			b.WriteString("Emergency access: one signature, short expiry, post-hoc review by a second officer\n")
		}
	}
	fmt.Fprintf(&b, "Review page wording: %s\n", d.WordingVersion)

	return b.String()
}

func orOpen(s string) string {
	if s == "" {
		return "(open)"
	}
	return s
}
