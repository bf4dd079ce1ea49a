package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"gatewayd/approvals"
	"gatewayd/templates"
)

// wordingVersion names this version of the review and signing pages' wording; it is signed with each
// decision, beside the text the page showed.
const wordingVersion = "review-v1"

// reviewInput is what the officer chose on the review page (a form post).
type reviewInput struct {
	Verdict      string
	Categories   []string
	PeriodFrom   string
	PeriodTo     string
	Retriever    string
	ExpiresHours string
	Reason       string
	// IdentityOverride is the reason to approve although an identity trait differs (signed).
	IdentityOverride string
}

func parseReviewInput(c echo.Context) (reviewInput, error) {
	f, err := c.FormParams()
	if err != nil {
		return reviewInput{}, err
	}
	return reviewInput{Verdict: f.Get("verdict"), Categories: f["categories"], PeriodFrom: strings.TrimSpace(f.Get("period_from")),
		PeriodTo: strings.TrimSpace(f.Get("period_to")), Retriever: f.Get("retriever"), ExpiresHours: f.Get("expires_hours"),
		Reason: f.Get("reason"), IdentityOverride: f.Get("identity_override")}, nil
}

// prepareDecision answers POST /review/:id/prepare: it checks the officer's choice, builds the decision and
// starts the signature. The page (or the JSON) then shows, in plain words, exactly the text the receipt keeps
// as what the officer saw, and the options for the officer's key.
func (h *handler) prepareDecision(c echo.Context) error {
	ctx := c.Request().Context()
	id := c.Param("id")
	in, err := parseReviewInput(c)
	if err != nil {
		return echo.NewHTTPError(http.StatusBadRequest).SetInternal(err)
	}
	scope, err := h.approvals.ScopeOf(ctx, id)
	if errors.Is(err, approvals.ErrNotFound) {
		return echo.ErrNotFound
	}
	if err != nil {
		return err
	}
	lang, _ := c.Get(ctxLang).(string)
	names := func(id string) string { return h.personName(ctx, id) }
	di := approvals.DecisionInput{Verdict: in.Verdict, Reason: in.Reason, WordingVersion: wordingVersion + "/" + lang,
		Retriever: approvals.RetrieverKind(in.Retriever),
		Describe: func(d approvals.Decision, m approvals.Manifest) string {
			return describeDecision(lang, h.cfg.TimeZone, d, m, names)
		}}
	if in.Verdict == approvals.Approve {
		narrowed := scope
		narrowed.Categories = nil
		for _, cat := range in.Categories {
			narrowed.Categories = append(narrowed.Categories, approvals.Category(cat))
		}
		narrowed.Period = approvals.Period{From: in.PeriodFrom, To: in.PeriodTo}
		di.Scope = &narrowed
		di.IdentityOverride = in.IdentityOverride
		if in.ExpiresHours != "" {
			hrs, err := strconv.Atoi(in.ExpiresHours)
			if err != nil || hrs <= 0 {
				return h.refuseDecision(c, in, fmt.Errorf("%w: expiry", approvals.ErrExpiryOutOfRange))
			}
			di.ExpiresIn = time.Duration(hrs) * time.Hour
		}
	}
	p, err := h.approvals.PrepareDecision(ctx, sessionOf(c).User.ID, id, di)
	if err != nil {
		return h.refuseDecision(c, in, err)
	}
	signURL := "/review/" + id + "/sign?preparation=" + p.ID
	if wantsJSON(c) {
		return c.JSON(http.StatusOK, map[string]any{"preparation": p.ID, "options": p.Options, "shown": p.Shown,
			"sign_by": p.SignBy, "sign_url": signURL})
	}
	opts, err := json.Marshal(p.Options)
	if err != nil {
		return err
	}
	return h.render(c, http.StatusOK, "decision_sign", &templates.Page{Title: "sign.title", Data: struct {
		RequestID, Verdict, Shown, Options, SignURL string
		Entries                                     int
		SignBy                                      time.Time
	}{id, p.Decision.Verdict, p.Shown, string(opts), signURL, len(p.Manifest.Entries), p.SignBy}})
}

func (h *handler) refuseDecision(c echo.Context, in reviewInput, err error) error {
	r := refusalOf(err)
	if !strings.HasPrefix(r.Msg, "decision.err.") || wantsJSON(c) {
		return err
	}
	h.log.Info("decision refused", "request_id", requestID(c), "approval_request", c.Param("id"), "code", r.Code)
	key, status := r.Msg, r.Status
	p, rerr := h.reviewData(c, in)
	if rerr != nil {
		return rerr
	}
	switch in.Verdict {
	case approvals.Deny:
		p.DenyErr = key
	case approvals.NothingRecorded:
		p.NothingErr = key
	default:
		p.ApproveErr = key
	}
	return h.render(c, status, "review", &templates.Page{Title: "review.title", Data: p})
}

// signDecision answers POST /review/:id/sign?preparation=...: the body is the officer key's assertion. The
// domain checks that it signs the challenge prepared for this very decision; on any refusal nothing changes.
func (h *handler) signDecision(c echo.Context) error {
	body, err := readJSONBody(c, maxCeremonyBody, assertionNames...)
	if err != nil {
		return err
	}
	out, err := h.approvals.CompleteDecision(c.Request().Context(), sessionOf(c).User.ID, c.QueryParam("preparation"), body)
	if err != nil {
		return err
	}
	// The preparation names the request it decides; the URL's id is only where the signature was posted.
	h.log.Info("decision signed", "request_id", requestID(c), "approval_request", out.RequestID, "decision", out.DecisionID,
		"status", string(out.Status))
	return c.JSON(http.StatusOK, map[string]string{"status": string(out.Status), "decision": out.DecisionID,
		"redirect": "/queue?signed=" + out.RequestID + "&outcome=" + string(out.Status)})
}

// describeDecision says in plain words, in the page's language, what the officer is about to sign. It is
// written from the decision as built, so it is exactly what the signature covers (plus the entry count and
// the people's names beside their ids, and local times beside UTC).
func describeDecision(lang string, zone *time.Location, d approvals.Decision, m approvals.Manifest, name func(string) string) string {
	t := func(key string, args ...any) string { return templates.T(lang, key, args...) }
	var b strings.Builder
	sep := t("sign.sep")
	line := func(label, value string) { fmt.Fprintf(&b, "%s%s%s\n", t(label), sep, value) }
	at := func(utc string) string {
		tm, err := time.Parse(approvals.TimeFormat, utc)
		if err != nil {
			return utc
		}
		return templates.FormatTime(lang, zone, tm) + " (" + utc + ")"
	}
	line("sign.line.decision", t("sign.verdict."+d.Verdict))
	line("sign.line.request", templates.Ref(d.RequestID)+" ("+d.RequestID+")")
	line("sign.line.officer", name(d.OfficerID))
	line("sign.line.patient", d.Scope.Patient.System+" | "+d.Scope.Patient.Value)
	cats := make([]string, len(d.Scope.Categories))
	for i, c := range d.Scope.Categories {
		cats[i] = t("records.category." + string(c))
	}
	line("sign.line.categories", strings.Join(cats, ", "))
	if d.Scope.Period.IsZero() {
		line("sign.line.period", t("sign.period.any"))
	} else {
		line("sign.line.period", t("sign.period.range", orDash(d.Scope.Period.From), orDash(d.Scope.Period.To)))
	}
	line("sign.line.purpose", t("purpose."+string(d.Scope.Purpose)))
	switch d.Verdict {
	case approvals.Deny:
		line("sign.line.reason", d.Reason)
	case approvals.NothingRecorded:
		line("sign.line.entries", "0")
		line("sign.line.digest", d.ManifestDigest)
	default:
		who := t("sign.retriever.staff")
		if d.Retriever != nil && d.Retriever.Kind == approvals.ToRequester {
			who = t("sign.retriever.requester", name(d.Retriever.UserID))
		}
		line("sign.line.retriever", who)
		line("sign.line.expires", at(d.ExpiresAt))
		line("sign.line.entries", strconv.Itoa(len(m.Entries)))
		line("sign.line.digest", d.ManifestDigest)
		if o := d.IdentityOverride; o != nil {
			traits := make([]string, len(o.Differs))
			for i, tr := range o.Differs {
				traits[i] = t("filing.field." + tr)
			}
			line("sign.line.override", strings.Join(traits, ", "))
			line("sign.line.override.reason", o.Reason)
		}
	}
	line("sign.line.issued", at(d.IssuedAt))
	return b.String()
}

func orDash(s string) string {
	if s == "" {
		return "…"
	}
	return s
}
