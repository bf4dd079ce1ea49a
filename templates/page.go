package templates

import (
	"html/template"
	"time"
)

// Page is what every page template receives. Handlers fill the common fields through the gateway's page
// helper and put their own data in Data.
type Page struct {
	Lang      string // "fr" or "en"
	Listener  string // "intake" or "console"
	Title     string // message key of the page title
	Path      string // the current path, for the language switch
	RequestID string
	CSRF      string         // the form token, once sessions exist
	User      *User          // nil when nobody is signed in
	DevBanner bool           // --dev-allow-software-keys is on: say so on every console page
	Status    int            // for the error page
	Message   string         // message key, for the error page
	Zone      *time.Location // the hospital's time zone; nil shows UTC
	Data      any
	Pager     *Pager // lists: the total and the link to the next page, shown under the content
}

// Pager is what a paged list shows under its items.
type Pager struct {
	Total int64
	Next  string // the URL of the next page; "" on the last
	First string // the URL of the first page, when this is not it
}

// User is what a page may show of the person signed in.
type User struct {
	ID   string
	Name string
	Role string
	Home string // the role's home page
}

// T translates key into the page's language.
func (p *Page) T(key string, args ...any) string { return T(p.Lang, key, args...) }

// HTML translates a key whose message holds trusted markup written by us (never user input).
func (p *Page) HTML(key string, args ...any) template.HTML {
	return template.HTML(T(p.Lang, key, args...))
}

// OtherLang is the language the switch offers.
func (p *Page) OtherLang() string {
	if p.Lang == "en" {
		return "fr"
	}
	return "en"
}

// Time writes a time (time.Time or *time.Time; "" for nil) in the hospital's time zone, in the page's
// language: "30/11/2026 18:32 CET" in French, "2026-11-30 18:32 CET" in English.
func (p *Page) Time(v any) string { return FormatTime(p.Lang, p.Zone, v) }

// FormatTime is Page.Time for callers without a page (the printable extract).
func FormatTime(lang string, zone *time.Location, v any) string {
	var t time.Time
	switch v := v.(type) {
	case time.Time:
		t = v
	case *time.Time:
		if v == nil {
			return ""
		}
		t = *v
	default:
		return ""
	}
	if zone == nil {
		zone = time.UTC
	}
	if lang == "fr" {
		return t.In(zone).Format("02/01/2006 15:04 MST")
	}
	return t.In(zone).Format("2006-01-02 15:04 MST")
}

// Date writes a date (YYYY-MM-DD) in the page's language: "30/11/2026" in French; unchanged in English.
func (p *Page) Date(s string) string { return FormatDate(p.Lang, s) }

// FormatDate is Page.Date for callers without a page.
func FormatDate(lang, s string) string {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil || lang != "fr" {
		return s
	}
	return t.Format("02/01/2006")
}

// Ref is the short reference of a request id, for the page.
func (p *Page) Ref(id string) string { return Ref(id) }

// With pairs the page with a value, for a shared block that needs both ({{template "state" $.With .State}}).
func (p *Page) With(v any) Sub { return Sub{Page: p, V: v} }

// Sub is a page and one value.
type Sub struct {
	*Page
	V any
}
