package deploy

import (
	"os"
	"strings"
	"testing"
)

// TestContainerfile: the final stage starts from scratch (no shell, nothing but the binary), runs as the
// non-root user the Deployment names, and the binary is built static (CGO off).
func TestContainerfile(t *testing.T) {
	raw, err := os.ReadFile("Containerfile")
	if err != nil {
		t.Fatal(err)
	}
	var stages [][]string // the instructions of each stage
	for _, line := range strings.Split(string(raw), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "FROM ") {
			stages = append(stages, nil)
		}
		if len(stages) == 0 {
			t.Fatalf("instruction before FROM: %q", line)
		}
		stages[len(stages)-1] = append(stages[len(stages)-1], line)
	}
	if len(stages) < 2 {
		t.Fatalf("%d stages: want a build stage and a final one", len(stages))
	}
	final := stages[len(stages)-1]
	if final[0] != "FROM scratch" {
		t.Errorf("final stage %q: want FROM scratch (no shell)", final[0])
	}
	var user string
	for _, ins := range final {
		if strings.HasPrefix(ins, "RUN ") {
			t.Errorf("final stage runs %q: there is no shell there", ins)
		}
		if strings.HasPrefix(ins, "USER ") {
			user = strings.TrimPrefix(ins, "USER ")
		}
	}
	if user != "65532:65532" {
		t.Errorf("final stage USER %q, want 65532:65532 (the Deployment's runAsUser)", user)
	}
	build := strings.Join(stages[len(stages)-2], "\n")
	if !strings.Contains(build, "CGO_ENABLED=0 go build") {
		t.Errorf("the binary is not built with CGO_ENABLED=0 (static)")
	}
	m := loadManifests(t)
	if u := m.deployments[0].Spec.Template.Spec.SecurityContext.RunAsUser; u == nil || *u != 65532 {
		t.Errorf("Deployment runAsUser %v, want the image's 65532", u)
	}
}
