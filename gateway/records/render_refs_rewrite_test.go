package records

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// testTargets is a bundleTargets holding the Patient patientFHIRID (unless "") and the entries of the given
// types and FHIR ids.
func testTargets(t testing.TB, patientFHIRID string, entries [][2]string) *bundleTargets {
	t.Helper()
	b := &bundleTargets{patientID: "patient", patientFHIRID: patientFHIRID,
		mac: &entryMACer{h: hmac.New(sha256.New, []byte("rewrite-test-key"))}, seen: map[string]string{}}
	for _, e := range entries {
		b.ids = append(b.ids, b.mac.of(b.patientID, e[0], e[1]))
	}
	slices.SortFunc(b.ids, func(x, y [16]byte) int { return bytes.Compare(x[:], y[:]) })
	return b
}

// sameAsTree checks the fast path against the tree path on one resource: when it does not decline, it gives
// the same bytes and the same originals, and the originals put back give the resource's canonical form. It
// says whether the fast path took the resource.
func sameAsTree(t *testing.T, b *bundleTargets, resource []byte) bool {
	t.Helper()
	want, wantOrig, treeErr := b.selfContainedTree(resource)
	got, gotOrig, ok := b.rewrite(resource)
	if !ok {
		return false
	}
	if treeErr != nil {
		t.Fatalf("%s: the tree path fails (%v), the fast path does not", resource, treeErr)
	}
	if !bytes.Equal(got, want) || !slices.Equal(gotOrig, wantOrig) {
		t.Fatalf("%s:\nfast %s %q\ntree %s %q", resource, got, gotOrig, want, wantOrig)
	}
	// RestoreResource takes an original's pointer up to its first space: a name with a space (never in FHIR)
	// is not restored.
	if len(gotOrig) > 0 && !nameWithSpace(resource) {
		canon, err := Canonical(resource)
		if err != nil {
			t.Fatal(err)
		}
		restored, err := RestoreResource(got, gotOrig)
		if err != nil || !bytes.Equal(restored, canon) {
			t.Fatalf("%s: restored %s (%v)", resource, restored, err)
		}
	}
	return true
}

// nameWithSpace says whether a member name of the JSON value holds a space.
func nameWithSpace(resource []byte) bool {
	var v any
	if json.Unmarshal(resource, &v) != nil {
		return false
	}
	var walk func(v any) bool
	walk = func(v any) bool {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if strings.Contains(k, " ") || walk(e) {
					return true
				}
			}
		case []any:
			return slices.ContainsFunc(x, walk)
		}
		return false
	}
	return walk(v)
}

// TestRewriteMatchesTree renders every resource of the test bundles, as stored (canonical), with the fast
// path and the tree path, against several sets of targets (all kept entries, half of them, none, not even
// the Patient): the same bytes and originals each time, and the fast path never declines a stored resource.
func TestRewriteMatchesTree(t *testing.T) {
	var files []string
	for _, dir := range []string{"../../testdata/fhir/bundles", "../../testdata/sample"} {
		m, err := filepath.Glob(filepath.Join(dir, "*.json"))
		if err != nil || len(m) == 0 {
			t.Fatalf("%s: %v", dir, err)
		}
		files = append(files, m...)
	}
	resources, changed := 0, 0
	for _, f := range files {
		var patient string
		var kept [][2]string
		stored := storedResources(t, f)
		for _, canon := range stored {
			var h struct{ ResourceType, ID string }
			if err := json.Unmarshal(canon, &h); err != nil {
				t.Fatal(err)
			}
			if h.ResourceType == "Patient" {
				patient = h.ID
			}
			if _, ok := categoryOf[h.ResourceType]; ok {
				kept = append(kept, [2]string{h.ResourceType, h.ID})
			}
		}
		var half [][2]string
		for i, k := range kept {
			if i%2 == 0 {
				half = append(half, k)
			}
		}
		for _, b := range []*bundleTargets{testTargets(t, patient, kept), testTargets(t, patient, half),
			testTargets(t, patient, nil), testTargets(t, "", nil)} {
			for _, res := range stored {
				if !sameAsTree(t, b, res) {
					t.Fatalf("%s: the fast path declined a stored resource: %.200s", filepath.Base(f), res)
				}
				if _, originals, _ := b.rewrite(res); len(originals) > 0 {
					changed++
				}
				resources++
			}
		}
	}
	if changed == 0 || changed == resources {
		t.Fatalf("%d of %d resources changed: the test data should have both", changed, resources)
	}
	t.Logf("%d resources, %d with references rewritten", resources, changed)
}

// rewriteTargets are the targets of the crafted cases and the fuzz target: the Patient p, an Observation
// o1 (fullUrl Observation/o1), an Encounter e (fullUrl urn:uuid:e).
const (
	rewriteP = "00000000-0000-4000-8000-000000000001"
	rewriteE = "00000000-0000-4000-8000-000000000002"
)

func rewriteTargets(t testing.TB) *bundleTargets {
	return testTargets(t, rewriteP, [][2]string{{"Observation", "o1"}, {"Encounter", rewriteE}})
}

// rewriteCases are resources spelt to reach every branch of the fast path: canonical ones it must take
// (take: true), and others it may decline, where it must then not differ from the tree path either.
var rewriteCases = []struct {
	resource string
	take     bool
}{
	{`{"resourceType":"Observation","subject":{"reference":"urn:uuid:` + rewriteP + `"}}`, true},
	{`{"resourceType":"Observation","subject":{"reference":"Patient/` + rewriteP + `"}}`, true},
	{`{"resourceType":"Observation","encounter":{"reference":"Encounter/` + rewriteE + `"},"subject":{"display":"x","reference":"Patient/nobody"}}`, true},
	{`{"resourceType":"Observation","performer":[{"reference":"Practitioner/1"},{"display":"Dr","reference":"Practitioner/2"},{"reference":"#c1"},{"reference":""}]}`, true},
	{`{"resourceType":"Observation","focus":[{"extension":[{"url":"u"}],"id":"f","reference":"Organization/1","type":"Organization"}]}`, true},
	{`{"resourceType":"Observation","focus":[{"_display":{"id":"x"},"reference":"Organization/1"}]}`, true},
	{`{"resourceType":"Observation","focus":[{"_display":{"id":"x"},"identifier":{"assigner":{"reference":"Organization/2"}},"reference":"Organization/1","type":"T"}]}`, true},
	{`{"resourceType":"Observation","focus":[{"identifier":{"assigner":{"reference":"Organization/2"}},"reference":"Observation/o1"}]}`, true},
	{`{"resourceType":"Observation","a~b/c":{"reference":"x"},"b":{"reference":{"reference":"y"}},"c":{"reference":1}}`, true},
	{`{"resourceType":"Observation","x":{"a":"\"\\\b\f\n\r\t\u0000\u001fé€😀�","n":[-0,1.0,1e5,1E+05,2.5e-3,true,false,null,{},[]],"reference":"Patient/x"}}`, true},
	{`{"a":{"reference":"x"},"resourceType":"Observation"}`, false},
	{`{"resourceType":"Observation","b":{"reference":"x"},"a":1}`, false},
	{`{"resourceType":"Observation","a":{"reference":"x","reference":"y"}}`, false},
	{`{"resourceType":"Observation", "a":{"reference":"x"}}`, false},
	{`{"resourceType":"Observation","a":{"reference":"\u0041"}}`, false},
	{`{"resourceType":"Observation","a":{"reference":"x\/y"}}`, false},
	{`{"resourceType":"Observation","a":{"reference":"x","z":"\u001F"}}`, false},
	{`{"resourceType":"Observation","a":{"reference":"x","z":"\u000a"}}`, false},
	{"{\"resourceType\":\"Observation\",\"a\":{\"reference\":\"x\",\"z\":\"\xff\"}}", false},
	{"{\"resourceType\":\"Observation\",\"a\":{\"reference\":\"x\",\"z\":\"\xed\xa0\x80\"}}", false},
	{"{\"resourceType\":\"Observation\",\"a\":{\"reference\":\"x\",\"z\":\"\t\"}}", false},
	{`{"resourceType":"Observation","a":{"reference":"x","z":01}}`, false},
	{`{"resourceType":"Observation","a":{"reference":"x","z":1.}}`, false},
	{`{"resourceType":"Observation","a":{"reference":"x","z":tru}}`, false},
	{`{"resourceType":"Observation","a":{"reference":"x"}}{}`, false},
	{`{"resourceType":"Observation","a":{"reference":"x"}`, false},
	{`{"resourceType":"Observation","a":{"reference":"x","resourceType":"Basic"}}`, false},
	{`{"resourceType":"Observation","a":{"\u0072eference":"x"}}`, false},
	{`{"resourceType":"Observation","reference":"Practitioner/1"}`, false},
	{`{"resourceType":{"a":{"reference":"x"}},"b":{"reference":"y"}}`, false},
	{`{"resourceType":"Observation","resourceType":"Observation"}`, false},
	{`[{"reference":"x"}]`, false},
	{`{"resourceType":"Observation","a":` + strings.Repeat("[", 2000) + strings.Repeat("]", 2000) + `}`, false},
}

func TestRewriteCases(t *testing.T) {
	for _, c := range rewriteCases {
		if took := sameAsTree(t, rewriteTargets(t), []byte(c.resource)); c.take && !took {
			t.Errorf("the fast path declined %s", c.resource)
		}
	}
}

// FuzzRewrite checks the fast path against the tree path on any bytes, and on their canonical form.
func FuzzRewrite(f *testing.F) {
	for _, c := range rewriteCases {
		f.Add([]byte(c.resource))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		b := rewriteTargets(t)
		sameAsTree(t, b, data)
		if canon, err := Canonical(data); err == nil {
			sameAsTree(t, b, canon)
		}
	})
}

// TestSelfContainedKeepsUnchanged: a resource with nothing to change comes back as the same bytes.
func TestSelfContainedKeepsUnchanged(t *testing.T) {
	res := []byte(`{"resourceType":"Observation","encounter":{"reference":"urn:uuid:` + rewriteE + `"},"subject":{"reference":"#p"}}`)
	out, originals, err := rewriteTargets(t).selfContained(res)
	if err != nil || len(originals) != 0 || &out[0] != &res[0] {
		t.Fatalf("%s %q %v", out, originals, err)
	}
}

// BenchmarkSelfContained makes the resources of a Synthea bundle self-contained with only the Patient in the
// Bundle (so that most references are removed): the fast path, and the tree path it replaces.
func BenchmarkSelfContained(b *testing.B) {
	stored := sampleResources(b)
	targets := testTargets(b, "fc712d1f-5a2e-4407-9c55-a2a2bad623c2", nil)
	for _, path := range []struct {
		name string
		fn   func([]byte) ([]byte, []string, error)
	}{{"tree", targets.selfContainedTree}, {"fast", targets.selfContained}} {
		b.Run(path.name, func(b *testing.B) {
			for b.Loop() {
				for _, res := range stored {
					if _, _, err := path.fn(res); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(stored)), "ns/resource")
		})
	}
}

// TestPlainASCII holds str's eight-byte skip to its byte loop's definition: a word is plain when none of its
// bytes is '"', '\\', below 0x20 or at or above 0x80. Every byte value at every position of a plain word, and
// plain words whose neighbouring bytes sit at the edges of the ranges (where a borrow could hide a byte).
func TestPlainASCII(t *testing.T) {
	plain := func(b []byte) bool {
		for _, c := range b {
			if c == '"' || c == '\\' || c < 0x20 || c >= 0x80 {
				return false
			}
		}
		return true
	}
	check := func(b []byte) {
		if got := plainASCII(binary.LittleEndian.Uint64(b)); got != plain(b) {
			t.Fatalf("plainASCII(%q) = %v, want %v", b, got, plain(b))
		}
	}
	edges := []byte{0x00, 0x1f, 0x20, 0x21, '"', 0x23, 0x5b, '\\', 0x5d, 0x7f, 0x80, 0xff, 'a'}
	for _, fill := range edges {
		for pos := range 8 {
			for c := range 256 {
				b := bytes.Repeat([]byte{fill}, 8)
				b[pos] = byte(c)
				check(b)
			}
		}
	}
	for _, a := range edges {
		for _, b := range edges {
			for pos := range 7 {
				w := []byte("abcdefgh")
				w[pos], w[pos+1] = a, b
				check(w)
			}
		}
	}
}

// TestLookupFindsEveryType resolves "urn:uuid:" references to entries of every kept type, in several orders
// (the type last found is tried first next time): each finds its entry, whatever was found before it, and an
// id the Bundle does not hold, or holds under a type that is not kept, finds nothing.
func TestLookupFindsEveryType(t *testing.T) {
	if got := slices.Sorted(slices.Values(lookupOrder)); !slices.Equal(got, keptTypes) {
		t.Fatalf("lookupOrder %v is not the kept types %v", lookupOrder, keptTypes)
	}
	var entries [][2]string
	for i, typ := range keptTypes {
		entries = append(entries, [2]string{typ, fmt.Sprintf("00000000-0000-4000-8000-%012d", i)})
	}
	entries = append(entries, [2]string{"Practitioner", "00000000-0000-4000-8000-999999999999"})
	forward := slices.Clone(entries[:len(keptTypes)])
	backward := slices.Clone(forward)
	slices.Reverse(backward)
	for _, order := range [][][2]string{forward, backward, append(slices.Clone(backward), forward...)} {
		b := testTargets(t, "", entries)
		for _, e := range order {
			ref := "urn:uuid:" + e[1]
			if full, ok := b.lookup([]byte(ref)); !ok || full != ref {
				t.Errorf("%s %s: %q %v", e[0], ref, full, ok)
			}
			if b.resolve(ref) != ref { // again, past the memo
				t.Errorf("%s %s: not found the second time", e[0], ref)
			}
		}
		for _, missing := range []string{"00000000-0000-4000-8000-999999999999", "00000000-0000-4000-8000-123456789012"} {
			if full, ok := b.lookup([]byte("urn:uuid:" + missing)); ok {
				t.Errorf("urn:uuid:%s resolved to %q", missing, full)
			}
		}
	}
}

// TestIndexReferenceName: indexReferenceName finds what bytes.Index finds: in every suffix of short inputs
// with the name at the start, at the end, after near misses (`"re"reference":`, `reference":` without its
// quote, `"rf`, a tail alone); and each occurrence in turn in every resource of a Synthea bundle.
func TestIndexReferenceName(t *testing.T) {
	want := func(b []byte) int { return bytes.Index(b, []byte(`"reference":`)) }
	check := func(b []byte) int {
		t.Helper()
		got, w := indexReferenceName(b), want(b)
		if got != w {
			t.Fatalf("indexReferenceName(%.80q) = %d, bytes.Index = %d", b, got, w)
		}
		return got
	}
	for _, c := range []string{``, `"`, `"re`, `ference":`, `"reference":`, `"reference"`, `x"reference":1`,
		`reference":"a"`, `"re"reference":`, `"rreference":"reference":`, `"rf"ference":"reference":`,
		`{"a":"reference:","b":{"reference":"x"}}`, `ference":ference":"reference":`, `"reference""reference":`} {
		for cut := range len(c) + 1 {
			check([]byte(c[cut:]))
		}
	}
	found := 0
	for _, canon := range sampleResources(t) {
		for b := canon; ; found++ {
			at := check(b)
			if at < 0 {
				break
			}
			b = b[at+1:]
		}
	}
	if found < 200 {
		t.Fatalf("%d references found in the sample bundle; it holds 241", found)
	}
}

// sampleResources are the resources of a Synthea bundle (Alberto Atencio's, in testdata) as stored: canonical.
func sampleResources(tb testing.TB) [][]byte {
	return storedResources(tb, "../../testdata/fhir/bundles/Alberto_Atencio_fc712d1f-5a2e-4407-9c55-a2a2bad623c2.json")
}

// storedResources are the resources of the bundle in file as stored: canonical.
func storedResources(tb testing.TB, file string) [][]byte {
	tb.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		tb.Fatal(err)
	}
	var bundle struct {
		Entry []struct{ Resource json.RawMessage }
	}
	if err := json.Unmarshal(raw, &bundle); err != nil {
		tb.Fatal(err)
	}
	var stored [][]byte
	for _, e := range bundle.Entry {
		canon, err := Canonical(e.Resource)
		if err != nil {
			tb.Fatal(err)
		}
		stored = append(stored, canon)
	}
	return stored
}
