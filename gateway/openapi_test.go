package gateway

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"gatewayd/approvals"
	"gatewayd/gateway/store/storetest"
)

// openAPIDoc is what the tests read of gateway/openapi.yaml.
type openAPIDoc struct {
	OpenAPI    string                               `yaml:"openapi"`
	Paths      map[string]map[string]map[string]any `yaml:"paths"`
	Components struct {
		Responses map[string]struct {
			Digest struct {
				Entries []struct {
					ID          string `yaml:"id"`
					Version     int    `yaml:"version"`
					ContentHash string `yaml:"content_hash"`
				} `yaml:"entries"`
				Digest string `yaml:"digest"`
			} `yaml:"x-digest-example"`
		} `yaml:"responses"`
	} `yaml:"components"`
}

func readOpenAPI(t *testing.T) openAPIDoc {
	t.Helper()
	raw, err := os.ReadFile("openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc openAPIDoc
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi version %q", doc.OpenAPI)
	}
	return doc
}

// servesJSON says whether a route answers JSON to tools, and so belongs in openapi.yaml: the /api/ calls, the
// passkey ceremonies, and the console's signed actions (prepare, sign, revoke, re-issue).
func servesJSON(r Route) bool {
	switch {
	case strings.HasPrefix(r.Path, "/api/"), strings.HasPrefix(r.Path, "/auth/") && r.Path != "/auth/signout":
		return true
	}
	for _, suffix := range []string{"/prepare", "/sign", "/begin", "/finish"} {
		if r.Method == "POST" && strings.HasSuffix(r.Path, suffix) {
			return true
		}
	}
	return false
}

// TestOpenAPIMatchesRoutes keeps gateway/openapi.yaml true, both ways and for both listeners: every JSON route
// of each listener is documented for that listener (x-listeners), and every documented operation is a route
// of each listener it names.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	doc := readOpenAPI(t)
	var documented []string
	for path, ops := range doc.Paths {
		for method, op := range ops {
			if method == "parameters" {
				continue
			}
			ls, _ := op["x-listeners"].([]any)
			if len(ls) == 0 {
				t.Errorf("%s %s: no x-listeners", method, path)
			}
			for _, l := range ls {
				documented = append(documented, l.(string)+" "+strings.ToUpper(method)+" "+path)
			}
		}
	}
	s := testServer(t, storetest.NewSQLite(t), testConfig(t))
	param := regexp.MustCompile(`:([a-z_]+)`)
	var routed []string
	for listener, table := range map[string][]Route{Intake: s.IntakeRoutes(), Console: s.ConsoleRoutes()} {
		for _, r := range table {
			if servesJSON(r) {
				routed = append(routed, listener+" "+r.Method+" "+param.ReplaceAllString(r.Path, "{$1}"))
			}
		}
	}
	slices.Sort(documented)
	slices.Sort(routed)
	if len(routed) == 0 || !slices.Equal(documented, routed) {
		t.Fatalf("openapi.yaml and routes.go disagree:\ndocumented %v\nrouted     %v", documented, routed)
	}
}

// TestOpenAPIDigestRuleIsTheCode: the manifest digest example the document gives is what the code computes.
func TestOpenAPIDigestRuleIsTheCode(t *testing.T) {
	ex := readOpenAPI(t).Components.Responses["Extract"].Digest
	if len(ex.Entries) == 0 || ex.Digest == "" {
		t.Fatal("openapi.yaml: the Extract response has no x-digest-example")
	}
	var entries []approvals.ManifestEntry
	for _, e := range ex.Entries {
		entries = append(entries, approvals.ManifestEntry{ID: e.ID, Version: e.Version, ContentHash: e.ContentHash})
	}
	if got := approvals.ManifestDigest(entries); got != ex.Digest {
		t.Fatalf("openapi.yaml's digest example says %s, the code computes %s", ex.Digest, got)
	}
}
