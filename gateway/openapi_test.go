package gateway

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"gatewayd/gateway/store/storetest"
)

// TestOpenAPIMatchesRoutes keeps gateway/openapi.yaml true: every /api/ route of both listeners is documented
// with its method, and every documented operation is a route.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	raw, err := os.ReadFile("openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		OpenAPI string                               `yaml:"openapi"`
		Paths   map[string]map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi version %q", doc.OpenAPI)
	}
	var documented []string
	for path, ops := range doc.Paths {
		for method := range ops {
			if method == "parameters" {
				continue
			}
			documented = append(documented, strings.ToUpper(method)+" "+path)
		}
	}
	s := testServer(t, storetest.NewSQLite(t), testConfig(t))
	param := regexp.MustCompile(`:([a-z_]+)`)
	var routed []string
	for _, table := range [][]Route{s.IntakeRoutes(), s.ConsoleRoutes()} {
		for _, r := range table {
			if strings.HasPrefix(r.Path, "/api/") {
				routed = append(routed, r.Method+" "+param.ReplaceAllString(r.Path, "{$1}"))
			}
		}
	}
	slices.Sort(documented)
	slices.Sort(routed)
	if len(routed) == 0 || !slices.Equal(documented, routed) {
		t.Fatalf("openapi.yaml and routes.go disagree:\ndocumented %v\nrouted     %v", documented, routed)
	}
}
