package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"

	"github.com/labstack/echo/v4"

	"gatewayd/approvals"
	"gatewayd/gateway/records"
	"gatewayd/templates"
)

// Extract formats a retriever may choose.
const (
	formatFHIR = "fhir"
	formatHTML = "html"
)

// errNoDomain answers when the server was built without a master key (no records, no approvals).
var errNoDomain = errors.New("approvals and records are not configured")

// retrieveExtract claims an extract for the signed-in retriever and streams it, once. The claim (one
// atomic UPDATE) commits with its audit row before any byte is rendered; the bytes go straight from the
// records to the client through a writer that hashes and counts them, and a second audit row
// (extract.delivered) records their SHA-256 and size, and whether the stream completed. Nothing is written
// to disk, and nothing of the content reaches the log. Anyone but the retriever, and an unknown id, get the
// generic 404: no hint that the extract exists.
func (h *handler) retrieveExtract(c echo.Context) error {
	if h.approvals == nil || h.records == nil {
		return echo.NewHTTPError(http.StatusNotFound).SetInternal(errNoDomain)
	}
	format := c.FormValue("format")
	if format == "" {
		format = formatFHIR
	}
	if format != formatFHIR && format != formatHTML {
		return echo.NewHTTPError(http.StatusBadRequest).SetInternal(fmt.Errorf("extract format %q", shortValue(format)))
	}
	ctx := c.Request().Context()
	user := sessionOf(c).User
	x, err := h.approvals.ClaimExtract(ctx, c.Param("id"), user.ID)
	if err != nil {
		return h.extractRefused(c, err)
	}
	d, err := h.approvals.DeliveryOf(ctx, x, user.ID)
	var m records.Manifest
	if err == nil {
		refs := make([]records.EntryRef, len(x.Entries))
		for i, e := range x.Entries {
			refs[i] = records.EntryRef{ID: e.ID, Version: e.Version, ContentHash: e.ContentHash}
		}
		m, err = h.records.ManifestOf(ctx, records.Identifier(d.Patient), refs)
	}
	if err != nil {
		// Claimed, nothing sent: one time is one time, the delivery is recorded as incomplete.
		h.recordDelivery(ctx, c, x.ID, user.ID, &countingHash{h: sha256.New()}, false, err)
		return fmt.Errorf("prepare extract %s: %w", x.ID, err)
	}

	wm := records.Watermark{RequestID: x.RequestID, DecisionID: x.DecisionID, Requester: person(d.Requester),
		Purpose: string(d.Purpose), Recipient: person(d.Retriever), Expiry: x.ExpiresAt, ManifestDigest: x.ManifestDigest}
	ext, ctype := ".json", "application/fhir+json; charset=utf-8"
	if format == formatHTML {
		ext, ctype = ".html", "text/html; charset=utf-8"
	}
	hd := c.Response().Header()
	hd.Set(echo.HeaderContentType, ctype)
	hd.Set(echo.HeaderContentDisposition, fmt.Sprintf(`attachment; filename="extract-%s-%s%s"`, x.RequestID, short(x.DecisionID), ext))
	hd.Set("Cache-Control", "no-store")
	hd.Set("Pragma", "no-cache")
	// No explicit WriteHeader: the first byte commits the 200, so a failure before any byte (the patient's
	// demographics unreadable, say) still gets a clean error page.
	cw := &countingHash{w: c.Response(), h: sha256.New()}
	if format == formatHTML {
		lang, _ := c.Get(ctxLang).(string)
		err = h.records.RenderHTML(ctx, cw, m, records.Identifier(d.Patient), wm, lang)
	} else {
		err = h.records.RenderBundle(ctx, cw, m, records.Identifier(d.Patient), wm)
	}
	if err == nil {
		c.Response().Flush()
	}
	h.recordDelivery(ctx, c, x.ID, user.ID, cw, err == nil && cw.err == nil, err)
	if err != nil && !c.Response().Committed {
		hd.Del(echo.HeaderContentDisposition)
		return fmt.Errorf("render extract %s: %w", x.ID, err)
	}
	return nil
}

// recordDelivery writes the extract.delivered row. The request's context may be cancelled (the client went
// away): the record is written regardless.
func (h *handler) recordDelivery(ctx context.Context, c echo.Context, extractID, userID string, cw *countingHash, complete bool, cause error) {
	sum := hex.EncodeToString(cw.h.Sum(nil))
	rid, _ := c.Get(ctxRequestID).(string)
	if err := h.approvals.RecordDelivery(context.WithoutCancel(ctx), extractID, userID,
		approvals.Delivered{SHA256: sum, Bytes: cw.n, Complete: complete}); err != nil {
		h.log.Error("record extract delivery", "request_id", rid, "extract", extractID, "error", err)
	}
	if !complete {
		// The cause never carries content: records' errors name entry ids and reasons only.
		h.log.Warn("extract delivery incomplete", "request_id", rid, "extract", extractID, "bytes", cw.n, "error", cause)
	}
}

// extractRefused answers a refused claim. The retriever learns why (already retrieved, expired, revoked);
// anyone else, and an unknown id, get the generic 404. The refusal was audited by the claim.
func (h *handler) extractRefused(c echo.Context, err error) error {
	var key string
	switch {
	case errors.Is(err, approvals.ErrAlreadyRetrieved):
		key = "extracts.refused.retrieved"
	case errors.Is(err, approvals.ErrExpired):
		key = "extracts.refused.expired"
	case errors.Is(err, approvals.ErrRevoked):
		key = "extracts.refused.revoked"
	case errors.Is(err, approvals.ErrNotRetriever), errors.Is(err, approvals.ErrNotFound), errors.Is(err, approvals.ErrNoUser):
		return echo.NewHTTPError(http.StatusNotFound).SetInternal(err)
	default:
		return err
	}
	rid, _ := c.Get(ctxRequestID).(string)
	if wantsJSON(c) {
		return c.JSON(http.StatusGone, map[string]string{"error": templates.T("en", key), "code": key, "request_id": rid})
	}
	return h.render(c, http.StatusGone, "error", &templates.Page{Title: "extracts.refused.title", Status: http.StatusGone, Message: key})
}

// countingHash passes bytes to w and hashes and counts those w accepted. After w fails, it keeps the error
// and refuses further writes, so rendering stops.
type countingHash struct {
	w   io.Writer
	h   hash.Hash
	n   int64
	err error
}

func (cw *countingHash) Write(p []byte) (int, error) {
	if cw.err != nil {
		return 0, cw.err
	}
	n, err := cw.w.Write(p)
	cw.h.Write(p[:n])
	cw.n += int64(n)
	cw.err = err
	return n, err
}

// person is how the watermark names a user: display name and professional id (not patient data).
func person(u approvals.User) string {
	if u.ProfessionalID == "" {
		return u.Name
	}
	return u.Name + " (" + u.ProfessionalID + ")"
}

// short is the first 8 characters of an id, for file names.
func short(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

// shortValue bounds a client-given value before it reaches the log.
func shortValue(s string) string {
	if len(s) > 16 {
		return s[:16] + "…"
	}
	return s
}
