package gateway

import (
	"net/url"

	"github.com/labstack/echo/v4"

	"gatewayd/gateway/store"
	"gatewayd/templates"
)

// pageAsked reads a list's page from ?after= (the cursor of the previous page's "next").
func pageAsked(c echo.Context) store.Page {
	return store.Page{After: c.QueryParam("after")}
}

// pagerFor is what a list page shows under its items: the total and the links to the next and first pages.
func pagerFor(c echo.Context, total int64, next string) *templates.Pager {
	p := &templates.Pager{Total: total}
	path := c.Request().URL.Path
	if next != "" {
		p.Next = path + "?after=" + url.QueryEscape(next)
	}
	if c.QueryParam("after") != "" {
		p.First = path
	}
	return p
}

// listJSON is the shape of every JSON list: its items under their name, the total, and the cursor of the
// next page (absent on the last: GET the same path with ?after=<next>).
func listJSON(name string, items any, total int64, next string) map[string]any {
	out := map[string]any{name: items, "total": total}
	if next != "" {
		out["next"] = next
	}
	return out
}
