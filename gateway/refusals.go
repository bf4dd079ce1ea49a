package gateway

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"gatewayd/approvals"
	"gatewayd/gateway/audit"
	"gatewayd/gateway/identity"
	"gatewayd/gateway/store"
	"gatewayd/gateway/strictjson"
	"gatewayd/templates"
)

// refusal is one way the gateway answers no: a stable code (the "error" member of every JSON error, which
// scripts branch on), an HTTP status, and the message key of the page or of the JSON "message".
type refusal struct {
	Code   string
	Status int
	Msg    string
}

// retryAfter is what a 503 asks clients to wait, in seconds.
const retryAfter = 5

var (
	// errConsoleForbidden: a client outside --console-allow.
	errConsoleForbidden = errors.New("client outside --console-allow")
	// errDeliveryFailed: an extract was claimed (used up) but rendering it failed before the first byte.
	errDeliveryFailed = errors.New("extract claimed but not delivered")
	// errUnavailable: the database (or the audit log) cannot take the change now.
	errUnavailable = errors.New("database unavailable")

	unavailable = refusal{"unavailable", http.StatusServiceUnavailable, "error.503"}
	internal    = refusal{"internal", http.StatusInternalServerError, "error.500"}
)

// refusals is THE table: every error a handler returns is answered by the first entry it wraps, else by its
// echo.HTTPError status (byStatus), else as an internal error. Domain refusals of the same meaning share a
// row; an extract refusal a stranger could use to learn that the extract exists answers not_found.
var refusals = []struct {
	err error
	r   refusal
}{
	{errUnavailable, unavailable},
	{audit.ErrUnavailable, unavailable},
	{errConsoleForbidden, refusal{"forbidden", http.StatusForbidden, "console.forbidden"}},
	{errDeliveryFailed, refusal{"delivery_failed", http.StatusInternalServerError, "extracts.delivery.failed"}},

	{approvals.ErrNotFound, refusal{"not_found", http.StatusNotFound, "error.404"}},
	{approvals.ErrNoUser, refusal{"not_found", http.StatusNotFound, "error.404"}},
	{approvals.ErrNotRetriever, refusal{"not_found", http.StatusNotFound, "error.404"}},
	{identity.ErrNotFound, refusal{"not_found", http.StatusNotFound, "error.404"}},
	{approvals.ErrForbidden, refusal{"forbidden", http.StatusForbidden, "error.403"}},
	{identity.ErrSignatureNotForYou, refusal{"forbidden", http.StatusForbidden, "error.403"}},

	{approvals.ErrAlreadyRetrieved, refusal{"extract_retrieved", http.StatusGone, "extracts.refused.retrieved"}},
	{approvals.ErrExpired, refusal{"extract_expired", http.StatusGone, "extracts.refused.expired"}},
	{approvals.ErrRevoked, refusal{"extract_revoked", http.StatusGone, "extracts.refused.revoked"}},
	{approvals.ErrNotReissuable, refusal{"not_reissuable", http.StatusConflict, "error.409"}},
	{approvals.ErrNotPending, refusal{"not_pending", http.StatusConflict, "error.409"}},
	{approvals.ErrRateLimited, refusal{"rate_limited", http.StatusTooManyRequests, "error.429"}},

	{approvals.ErrWidened, refusal{"widened", http.StatusUnprocessableEntity, "decision.err.widened"}},
	{approvals.ErrExpiryOutOfRange, refusal{"expiry_out_of_range", http.StatusUnprocessableEntity, "decision.err.expiry_out_of_range"}},
	{approvals.ErrReasonRequired, refusal{"reason_required", http.StatusUnprocessableEntity, "decision.err.reason_required"}},
	{approvals.ErrEmptyManifest, refusal{"empty_manifest", http.StatusUnprocessableEntity, "decision.err.empty_manifest"}},
	{approvals.ErrNotEmpty, refusal{"not_empty", http.StatusUnprocessableEntity, "decision.err.not_empty"}},
	{approvals.ErrOwnRequest, refusal{"own_request", http.StatusUnprocessableEntity, "decision.err.own_request"}},
	{approvals.ErrSameOfficer, refusal{"same_officer", http.StatusUnprocessableEntity, "decision.err.same_officer"}},
	{approvals.ErrNotOpen, refusal{"not_open", http.StatusConflict, "decision.err.not_open"}},
	{approvals.ErrSecondMismatch, refusal{"second_mismatch", http.StatusUnprocessableEntity, "decision.err.second_mismatch"}},
	{approvals.ErrBlocked, refusal{"blocked", http.StatusUnprocessableEntity, "decision.err.blocked"}},
	{approvals.ErrMasked, refusal{"masked", http.StatusConflict, "decision.err.masked"}},
	{approvals.ErrReissueMasked, refusal{"reissue_masked", http.StatusConflict, "decision.err.reissue_masked"}},
	{approvals.ErrRestrictionInput, refusal{"bad_input", http.StatusUnprocessableEntity, "restrictions.err.input"}},
	{approvals.ErrUnknownEntry, refusal{"unknown_entry", http.StatusUnprocessableEntity, "restrictions.err.entry"}},
	{approvals.ErrAlreadyRestricted, refusal{"already_restricted", http.StatusConflict, "restrictions.err.already"}},
	{approvals.ErrRestrictionUnknown, refusal{"not_in_force", http.StatusConflict, "restrictions.err.unknown"}},
	{approvals.ErrTraitsDiffer, refusal{"traits_differ", http.StatusUnprocessableEntity, "decision.err.traits_differ"}},
	{approvals.ErrNoOverrideNeeded, refusal{"no_override_needed", http.StatusUnprocessableEntity, "decision.err.no_override_needed"}},
	{approvals.ErrNoPatient, refusal{"no_patient", http.StatusUnprocessableEntity, "decision.err.no_patient"}},
	{approvals.ErrBadInput, refusal{"bad_input", http.StatusUnprocessableEntity, "decision.err.bad_input"}},
	{approvals.ErrControlChars, refusal{"control_chars", http.StatusUnprocessableEntity, "decision.err.control_chars"}},
	{approvals.ErrOwnRelease, refusal{"own_release", http.StatusUnprocessableEntity, "emergency.err.own_release"}},
	{approvals.ErrAlreadyReviewed, refusal{"already_reviewed", http.StatusConflict, "emergency.err.already_reviewed"}},
	{store.ErrBadCursor, refusal{"bad_input", http.StatusUnprocessableEntity, "error.422"}},
	{identity.ErrUnknownCredential, refusal{"no_key", http.StatusUnauthorized, "decision.err.no_key"}},

	{approvals.ErrNoAssertion, refusal{"no_assertion", http.StatusBadRequest, "sign.js.refused"}},
	{approvals.ErrChallenge, refusal{"wrong_challenge", http.StatusConflict, "sign.js.refused"}},
	{approvals.ErrPreparation, refusal{"expired", http.StatusGone, "sign.js.expired"}},
	{identity.ErrCeremonyExpired, refusal{"expired", http.StatusGone, "auth.js.expired"}},
	{identity.ErrCeremonyNotFound, refusal{"expired", http.StatusGone, "auth.js.expired"}},
	{identity.ErrInvitationInvalid, refusal{"invitation_invalid", http.StatusNotFound, "auth.invite.invalid"}},
	{identity.ErrHardwareKeyNeeded, refusal{"hardware_key_needed", http.StatusUnauthorized, "auth.js.hardware"}},
	{identity.ErrNoTrustAnchors, refusal{"hardware_key_needed", http.StatusUnauthorized, "auth.js.hardware"}},
	// 401, not 403, for a refused passkey: a failed authentication; 403 is kept for CSRF and roles.
	{identity.ErrVerification, refusal{"refused", http.StatusUnauthorized, "auth.js.refused"}},
	{identity.ErrCounterWentBack, refusal{"refused", http.StatusUnauthorized, "auth.js.refused"}},
	{identity.ErrUserSuspended, refusal{"refused", http.StatusUnauthorized, "auth.js.refused"}},
	{identity.ErrWrongListener, refusal{"refused", http.StatusUnauthorized, "auth.js.refused"}},
	{identity.ErrInvalidRole, refusal{"bad_input", http.StatusUnprocessableEntity, "error.422"}},
	{identity.ErrBadDisplayName, refusal{"bad_input", http.StatusUnprocessableEntity, "error.422"}},
	{identity.ErrBadProfessionalID, refusal{"bad_input", http.StatusUnprocessableEntity, "error.422"}},
	{identity.ErrBadText, refusal{"bad_input", http.StatusUnprocessableEntity, "error.422"}},
	{identity.ErrProfessionalIDTaken, refusal{"professional_id_taken", http.StatusConflict, "admin.invitations.proid_taken"}},
	{identity.ErrBadPersonLink, refusal{"bad_person_link", http.StatusUnprocessableEntity, "admin.invitations.bad_link"}},
}

// byStatus answers the errors that carry only a status (echo's own: unknown route, method, body too large,
// and the handlers' plain bad requests).
var byStatus = map[int]refusal{
	http.StatusBadRequest:            {"bad_request", http.StatusBadRequest, "error.400"},
	http.StatusUnauthorized:          {"unauthorized", http.StatusUnauthorized, "error.403"},
	http.StatusForbidden:             {"forbidden", http.StatusForbidden, "error.403"},
	http.StatusNotFound:              {"not_found", http.StatusNotFound, "error.404"},
	http.StatusMethodNotAllowed:      {"method_not_allowed", http.StatusMethodNotAllowed, "error.405"},
	http.StatusConflict:              {"conflict", http.StatusConflict, "error.409"},
	http.StatusRequestEntityTooLarge: {"too_large", http.StatusRequestEntityTooLarge, "error.413"},
	http.StatusUnsupportedMediaType:  {"unsupported_media_type", http.StatusUnsupportedMediaType, "error.415"},
	http.StatusUnprocessableEntity:   {"bad_input", http.StatusUnprocessableEntity, "error.422"},
	http.StatusTooManyRequests:       {"rate_limited", http.StatusTooManyRequests, "error.429"},
	http.StatusServiceUnavailable:    unavailable,
}

// refusalOf finds err's answer. An unreachable database wins over the rest: whatever the handler was doing,
// the honest answer is "try again later".
func refusalOf(err error) refusal {
	if store.Unavailable(err) {
		return unavailable
	}
	var strict *strictjson.Error
	if errors.As(err, &strict) {
		return refusal{"bad_json", http.StatusBadRequest, "error.bad_json"}
	}
	for _, r := range refusals {
		if errors.Is(err, r.err) {
			return r.r
		}
	}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		if r, ok := byStatus[he.Code]; ok {
			return r
		}
		if he.Code < 500 {
			return byStatus[http.StatusBadRequest]
		}
	}
	return internal
}

// refuse marks err to be answered by the refusal of kind (one of the sentinels of the table).
func refuse(kind, err error) error { return errors.Join(kind, err) }

// errorJSON is the one shape of every JSON error.
type errorJSON struct {
	Error     string `json:"error"`
	Message   string `json:"message"`
	RequestID string `json:"request_id"`
}

// answerRefusal writes r: a 503 asks the client to come back (Retry-After), JSON clients get errorJSON,
// browsers the error page.
func (h *handler) answerRefusal(c echo.Context, r refusal, err error) error {
	if r.Status == http.StatusServiceUnavailable {
		c.Response().Header().Set("Retry-After", strconv.Itoa(retryAfter))
	}
	lang, _ := c.Get(ctxLang).(string)
	msg := templates.T(lang, r.Msg)
	// Strict JSON refusals name the place (element names of the caller's own body, never a value).
	var strict *strictjson.Error
	if errors.As(err, &strict) {
		msg += " " + strict.Error()
	}
	if wantsJSON(c) {
		return c.JSON(r.Status, errorJSON{Error: r.Code, Message: msg, RequestID: requestID(c)})
	}
	if c.Request().Method == http.MethodHead {
		return c.NoContent(r.Status)
	}
	return h.render(c, r.Status, "error", &templates.Page{Title: "error.title", Status: r.Status, Message: r.Msg, Lang: lang})
}
