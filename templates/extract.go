package templates

import (
	"fmt"
	"html/template"
)

// standalone lists the files that are not pages of the layout: they are parsed on their own.
var standalone = map[string]bool{"extract.html": true}

// Extract parses the printable extract (extract.html): a set of blocks ("extract-head", "extract-group-start",
// "extract-entry", "extract-group-end", "extract-foot") that the renderer executes one after the other, so
// that an extract streams entry by entry.
func Extract() (*template.Template, error) {
	t, err := template.ParseFS(files, "extract.html")
	if err != nil {
		return nil, fmt.Errorf("parse extract.html: %w", err)
	}
	return t, nil
}
