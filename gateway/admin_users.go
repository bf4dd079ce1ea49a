package gateway

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"gatewayd/templates"
)

func (h *handler) adminUsers(c echo.Context) error {
	users, err := h.id.Users(c.Request().Context(), pageAsked(c))
	if err != nil {
		return err
	}
	return h.render(c, http.StatusOK, "admin_users", &templates.Page{Title: "admin.users.title", Data: users.Items,
		Pager: pagerFor(c, users.Total, users.Next)})
}

func (h *handler) suspendUser(c echo.Context) error {
	actor := "user:" + sessionOf(c).User.ID
	err := h.id.Suspend(c.Request().Context(), actor, c.Param("id"))
	if err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/admin/users")
}

func (h *handler) revokeCredential(c echo.Context) error {
	actor := "user:" + sessionOf(c).User.ID
	err := h.id.RevokeCredential(c.Request().Context(), actor, c.Param("id"))
	if err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/admin/users")
}
