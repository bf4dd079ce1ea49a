package gateway

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"gatewayd/gateway/identity"
	"gatewayd/templates"
)

// invitationsView is the invitations page: the pending ones, and the link just made (shown once).
type invitationsView struct {
	Pending []identity.Invitation
	Roles   []string
	NewLink string
	Error   string // message key
}

func (h *handler) adminInvitations(c echo.Context) error {
	return h.showInvitations(c, http.StatusOK, invitationsView{})
}

func (h *handler) showInvitations(c echo.Context, status int, v invitationsView) error {
	pending, err := h.id.PendingInvitations(c.Request().Context(), pageAsked(c))
	if err != nil {
		return err
	}
	v.Pending, v.Roles = pending.Items, identity.Roles
	return h.render(c, status, "admin_invitations", &templates.Page{Title: "admin.invitations.title", Data: v,
		Pager: pagerFor(c, pending.Total, pending.Next)})
}

// createInvitation makes an invitation and shows its link once: only its hash is kept.
func (h *handler) createInvitation(c echo.Context) error {
	actor := "user:" + sessionOf(c).User.ID
	inv, err := h.id.Invite(c.Request().Context(), actor, identity.NewInvitation{Role: c.FormValue("role"),
		DisplayName: c.FormValue("name"), ProfessionalID: c.FormValue("professional_id")})
	switch {
	case errors.Is(err, identity.ErrInvalidRole), errors.Is(err, identity.ErrBadDisplayName), errors.Is(err, identity.ErrBadProfessionalID):
		return h.showInvitations(c, http.StatusBadRequest, invitationsView{Error: "admin.invitations.invalid"})
	case err != nil:
		return err
	}
	return h.showInvitations(c, http.StatusOK, invitationsView{NewLink: inv.Link})
}
