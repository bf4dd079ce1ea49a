package gateway_test

import (
	"testing"

	"gatewayd/approvals"
	"gatewayd/gateway/records"
)

// The digest an officer signs (approvals) and the one the records side documents and returns are one form.
// The value is pinned, so a change to either implementation fails here rather than in a receipt.
func TestManifestDigestIsOneForm(t *testing.T) {
	rec := []records.ManifestEntry{
		{ID: "b", Version: 2, ContentHash: "22"},
		{ID: "a", Version: 1, ContentHash: "11"},
		{ID: "b", Version: 1, ContentHash: "21"},
	}
	var app []approvals.ManifestEntry
	for _, e := range rec {
		app = append(app, approvals.ManifestEntry{ID: e.ID, Version: e.Version, ContentHash: e.ContentHash})
	}
	// printf 'gatewayd-manifest-v1\na 1 11\nb 1 21\nb 2 22\n' | sha256sum
	const want = "d01b4a6f9f6f2a09585d7e053b744507a00dabafccce04029b3eb6fa9a10979d"
	got := records.ManifestDigest(rec)
	if got != approvals.ManifestDigest(app) {
		t.Fatalf("records %s, approvals %s", got, approvals.ManifestDigest(app))
	}
	if got != want {
		t.Fatalf("digest %s, want %s", got, want)
	}
}
