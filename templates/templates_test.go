package templates_test

import (
	"io/fs"
	"regexp"
	"strings"
	"testing"

	"gatewayd/templates"
)

// Every key has both languages, and every key a page uses exists.
func TestCatalogIsComplete(t *testing.T) {
	for _, k := range templates.Keys() {
		for _, l := range templates.Languages {
			if s := templates.T(l, k); s == "" || s == "["+k+"]" {
				t.Errorf("%s: no %s text", k, l)
			}
		}
	}
	seen := map[string]bool{}
	for _, k := range templates.Keys() {
		if seen[k] {
			t.Errorf("key %s is defined twice", k)
		}
		seen[k] = true
	}
	used := regexp.MustCompile(`\.(?:T|HTML) "([a-z0-9_.]+)"`)
	pages, _ := fs.Glob(templates.FS(), "*.html")
	for _, p := range pages {
		b, _ := fs.ReadFile(templates.FS(), p)
		for _, m := range used.FindAllStringSubmatch(string(b), -1) {
			if !seen[m[1]] {
				t.Errorf("%s uses unknown key %s", p, m[1])
			}
		}
	}
}

func TestMatchLanguage(t *testing.T) {
	for in, want := range map[string]string{
		"":                        "fr",
		"en-US,en;q=0.9":          "en",
		"de-DE,en;q=0.5,fr;q=0.8": "fr",
		"de":                      "fr",
		"EN":                      "en",
	} {
		if got := templates.MatchLanguage(in); got != want {
			t.Errorf("MatchLanguage(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestPagesRender(t *testing.T) {
	r, err := templates.New()
	if err != nil {
		t.Fatal(err)
	}
	for _, page := range []string{"intake_home", "console_home", "error"} {
		for _, lang := range templates.Languages {
			var b strings.Builder
			p := &templates.Page{Lang: lang, Listener: "console", Title: "error.title", Message: "error.404", DevBanner: true}
			if err := r.Render(&b, page, p); err != nil {
				t.Fatalf("%s/%s: %v", page, lang, err)
			}
			if strings.Contains(b.String(), "[") && strings.Contains(b.String(), "]<") {
				t.Errorf("%s/%s shows a missing message: %s", page, lang, b.String())
			}
		}
	}
}

// Ref is deterministic, short, and spelled in Crockford's alphabet.
func TestRef(t *testing.T) {
	id := "3f2a9c1b0d4e5f60718293a4b5c6d7e8"
	a, b := templates.Ref(id), templates.Ref(id)
	if a != b || !regexp.MustCompile(`^R-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{2}$`).MatchString(a) {
		t.Fatalf("Ref(%s) = %s, %s", id, a, b)
	}
	if templates.Ref(id+"0") == a {
		t.Fatal("two ids, one reference")
	}
}
