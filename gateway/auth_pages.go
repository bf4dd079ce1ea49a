package gateway

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"gatewayd/gateway/identity"
	"gatewayd/templates"
)

// homePath is where a role lands after signing in.
func homePath(role string) string {
	switch role {
	case identity.RoleRequester:
		return "/home"
	case identity.RoleOfficer:
		return "/officer"
	case identity.RoleStaff:
		return "/staff"
	case identity.RoleAdmin:
		return "/admin"
	case identity.RoleDPO:
		return "/dpo"
	}
	return "/"
}

func (h *handler) signInPage(c echo.Context) error {
	if sess := sessionOf(c); sess != nil {
		return c.Redirect(http.StatusSeeOther, homePath(sess.User.Role))
	}
	return h.render(c, http.StatusOK, "signin", &templates.Page{Title: "auth.signin.title"})
}

// invitationView is what the invitation page shows: the role and the name the admin typed, to the person
// holding the link.
type invitationView struct {
	Token string
	Role  string
	Name  string
}

func (h *handler) invitePage(c echo.Context) error {
	token := c.Param("token")
	inv, err := h.id.OpenInvitation(c.Request().Context(), listenerOf(c), token)
	if errors.Is(err, identity.ErrInvitationInvalid) {
		return h.render(c, http.StatusNotFound, "error", &templates.Page{Title: "error.title", Status: http.StatusNotFound,
			Message: "auth.invite.invalid"})
	}
	if err != nil {
		return err
	}
	return h.render(c, http.StatusOK, "invite", &templates.Page{Title: "auth.invite.title",
		Data: invitationView{Token: token, Role: inv.Role, Name: inv.DisplayName}})
}

// signOut ends the session on the server and clears the cookie.
func (h *handler) signOut(c echo.Context) error {
	if err := h.id.SignOut(c.Request().Context(), sessionOf(c).ID); err != nil && !errors.Is(err, identity.ErrNoSession) {
		return err
	}
	h.setCookie(c, h.cookieName(listenerOf(c), "gw_session_"+listenerOf(c)), "", -1)
	if wantsJSON(c) {
		return c.JSON(http.StatusOK, map[string]string{"redirect": "/signin"})
	}
	return c.Redirect(http.StatusSeeOther, "/signin")
}

// roleHome is the minimal home page of each role; later issues fill them.
func (h *handler) roleHome(c echo.Context) error {
	role := sessionOf(c).User.Role
	d := homeData{Role: role}
	if role == identity.RoleOfficer {
		n, err := h.approvals.OverdueEmergencyReviews(c.Request().Context())
		if err != nil {
			return err
		}
		d.OverdueReviews = n
	}
	return h.render(c, http.StatusOK, "role_home", &templates.Page{Title: "home." + role + ".title", Data: d})
}

// homeData is what a role's home shows: the role, and for officers the emergency releases overdue for review.
type homeData struct {
	Role           string
	OverdueReviews int
}
