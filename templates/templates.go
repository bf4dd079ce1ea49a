// Package templates holds the pages (html/template), the static files and the message catalog, all embedded
// in the binary: the pages load nothing from elsewhere.
package templates

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"path"
	"strings"
)

//go:embed *.html static
var files embed.FS

// FS is every embedded file, for whoever needs to read them directly.
func FS() fs.FS { return files }

// Renderer renders the pages and knows the content-hash URL of every static file.
type Renderer struct {
	pages  map[string]*template.Template
	urls   map[string]string // "style.css" -> "/static/style.3f2a9c1b.css"
	byURL  map[string]StaticFile
	layout *template.Template
}

// StaticFile is one embedded static file as served.
type StaticFile struct {
	Name        string
	ContentType string
	Body        []byte
}

// New parses every page with the base layout and indexes the static files.
func New() (*Renderer, error) {
	r := &Renderer{pages: map[string]*template.Template{}, urls: map[string]string{}, byURL: map[string]StaticFile{}}
	statics, err := fs.ReadDir(files, "static")
	if err != nil {
		return nil, err
	}
	for _, e := range statics {
		body, err := fs.ReadFile(files, "static/"+e.Name())
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(body)
		ext := path.Ext(e.Name())
		url := "/static/" + strings.TrimSuffix(e.Name(), ext) + "." + hex.EncodeToString(sum[:4]) + ext
		r.urls[e.Name()] = url
		r.byURL[url] = StaticFile{Name: e.Name(), ContentType: contentType(ext), Body: body}
	}
	funcs := template.FuncMap{"static": r.StaticURL}
	layout, err := template.New("base.html").Funcs(funcs).ParseFS(files, "base.html", "blocks.html")
	if err != nil {
		return nil, fmt.Errorf("parse layout: %w", err)
	}
	r.layout = layout
	pages, err := fs.Glob(files, "*.html")
	if err != nil {
		return nil, err
	}
	for _, p := range pages {
		if p == "base.html" || p == "blocks.html" || standalone[p] {
			continue
		}
		t, err := template.Must(layout.Clone()).ParseFS(files, p)
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", p, err)
		}
		r.pages[strings.TrimSuffix(p, ".html")] = t
	}
	return r, nil
}

// StaticURL returns the content-hash URL of a static file, so that a new build never meets a stale cache.
func (r *Renderer) StaticURL(name string) (string, error) {
	u, ok := r.urls[name]
	if !ok {
		return "", fmt.Errorf("no static file %q", name)
	}
	return u, nil
}

// Static returns the file served at a content-hash URL.
func (r *Renderer) Static(url string) (StaticFile, bool) {
	f, ok := r.byURL[url]
	return f, ok
}

// Render writes a whole page. data is usually a *Page.
func (r *Renderer) Render(w io.Writer, page string, data any) error {
	t, ok := r.pages[page]
	if !ok {
		return fmt.Errorf("no page %q", page)
	}
	return t.ExecuteTemplate(w, "base.html", data)
}

// HasPage says whether a page exists.
func (r *Renderer) HasPage(page string) bool {
	_, ok := r.pages[page]
	return ok
}

func contentType(ext string) string {
	switch ext {
	case ".css":
		return "text/css; charset=utf-8"
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".svg":
		return "image/svg+xml"
	case ".png":
		return "image/png"
	}
	return "application/octet-stream"
}
