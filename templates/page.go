package templates

import "html/template"

// Page is what every page template receives. Handlers fill the common fields through the gateway's page
// helper and put their own data in Data.
type Page struct {
	Lang      string // "fr" or "en"
	Listener  string // "intake" or "console"
	Title     string // message key of the page title
	Path      string // the current path, for the language switch
	RequestID string
	CSRF      string // the form token, once sessions exist
	User      *User  // nil when nobody is signed in
	DevBanner bool   // --dev-allow-software-keys is on: say so on every console page
	Status    int    // for the error page
	Message   string // message key, for the error page
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
