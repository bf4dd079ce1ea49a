package gateway

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"gorm.io/gorm"

	"gatewayd/approvals"
	"gatewayd/gateway/store"
)

// Extract formats a retriever may choose.
const (
	formatFHIR = approvals.FormatFHIR
	formatHTML = approvals.FormatHTML
)

// errNoDomain answers when the server was built without a master key (no records, no approvals).
var errNoDomain = errors.New("approvals and records are not configured")

// retrieveExtract claims an extract for the signed-in retriever and streams it, once. The claim (one atomic
// UPDATE) commits with its audit row before any byte is rendered; approvals then renders exactly the signed
// manifest through the records (this handler, shared by intake and console, never touches the records itself)
// into a writer that hashes and counts, and records their SHA-256 and size, and whether the stream completed
// (extract.delivered). Nothing is written to disk, and nothing of the content reaches the log. Anyone but the
// retriever, and an unknown id, get the generic 404: no hint that the extract exists.
func (h *handler) retrieveExtract(c echo.Context) error {
	if h.approvals == nil {
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
	// A retrieval reads its entries a chunk at a time while the client reads (flat memory), each chunk on a
	// connection of the pool, and commits twice: a slot first, taken before the claim, so that many large or
	// slow downloads at once cannot take the server's memory and CPU and stall the console (retrievalSlots).
	// Retrievals wait their turn (concurrent ones for one extract still get their 410 in turn); after
	// h.retrievalWait (retrievalQueueWait) without a slot, 503 and Retry-After, and nothing consumed.
	wait := time.NewTimer(h.retrievalWait)
	defer wait.Stop()
	select {
	case h.retrievals <- struct{}{}:
		defer func() { <-h.retrievals }()
	case <-wait.C:
		return refuse(errUnavailable, fmt.Errorf("%d retrievals streaming for %s", cap(h.retrievals), h.retrievalWait))
	case <-ctx.Done():
		return ctx.Err()
	}
	user := sessionOf(c).User
	// A refused claim was audited by the claim. The retriever learns why (already retrieved, expired,
	// revoked); anyone else, and an unknown id, get the generic 404: no hint that the extract exists.
	x, err := h.approvals.ClaimExtract(ctx, c.Param("id"), user.ID)
	if err != nil {
		return err
	}
	ext, ctype := ".json", "application/fhir+json; charset=utf-8"
	if format == formatHTML {
		ext, ctype = ".html", "text/html; charset=utf-8"
	}
	hd := c.Response().Header()
	hd.Set(echo.HeaderContentType, ctype)
	hd.Set(echo.HeaderContentDisposition, fmt.Sprintf(`attachment; filename="extract-%s-%s%s"`, x.RequestID, x.DecisionID, ext))
	hd.Set("Cache-Control", "no-store")
	hd.Set("Pragma", "no-cache")
	// No explicit WriteHeader: the first byte commits the 200, so a failure before any byte (stored entries
	// that no longer match the signed manifest, say) still gets a clean error page.
	lang, _ := c.Get(ctxLang).(string)
	// The delivery is recorded complete only once the last byte was handed to the connection.
	rc := http.NewResponseController(c.Response())
	flush := func() error { return rc.Flush() }
	// A client that stops reading is cut after retrievalStall (the delivery is then recorded incomplete) and
	// gives its slot and its connection back; the deadline is cleared after, for the next request on the
	// connection (the server has no overall write timeout: a large extract on a slow phone may take minutes).
	defer func() { _ = rc.SetWriteDeadline(time.Time{}) }()
	w := stallWriter{w: c.Response(), rc: rc}
	sent, err := h.approvals.DeliverExtract(ctx, x, user.ID, format, lang, w, flush)
	if err == nil {
		return nil
	}
	rid, _ := c.Get(ctxRequestID).(string)
	// The error never carries content: records' and approvals' errors name ids and reasons only.
	h.log.Warn("extract delivery incomplete", "request_id", rid, "extract", x.ID, "bytes", sent.Bytes, "error", err)
	if !c.Response().Committed {
		// Not "nothing was changed": the extract is used up. The page says so, and that an officer can re-issue.
		hd.Del(echo.HeaderContentDisposition)
		return refuse(errDeliveryFailed, fmt.Errorf("deliver extract %s: %w", x.ID, err))
	}
	return nil
}

// shortValue bounds a client-given value before it reaches the log.
func shortValue(s string) string {
	if len(s) > 16 {
		return s[:16] + "…"
	}
	return s
}

// retrievalStall is how long a retrieval may wait on a client that reads nothing; retrievalQueueWait how long
// one waits for a slot (retrievalSlots) before it is answered 503 (handler.retrievalWait, which tests shorten).
const (
	retrievalStall     = 30 * time.Second
	retrievalQueueWait = 20 * time.Second
)

// stallWriter moves the connection's write deadline forward before each write: a slow client keeps going, a
// stalled one fails within retrievalStall.
type stallWriter struct {
	w  io.Writer
	rc *http.ResponseController
}

func (s stallWriter) Write(p []byte) (int, error) {
	_ = s.rc.SetWriteDeadline(time.Now().Add(retrievalStall))
	return s.w.Write(p)
}

// retrievalSlots is how many retrievals may stream at once: on PostgreSQL as many as the database pool has
// connections, 16 at most; on SQLite twice its pool (8). A retrieval holds one connection at a time, and only
// for its claim's read, each chunk's read and its delivery record, never while the client reads: the slots
// bound the streams in flight (their chunks in memory, their CPU), not the connections, and the console's
// statements queue behind at most one short statement per connection. Half the pool, as when a retrieval held
// its connection for the whole stream, left SQLite with 2 slots: at c = 8 its retrievals then waited on each
// other's commits (fsync) with the CPU idle; with 4, 129 to 158 retrievals/s against 107 to 125 in
// alternating runs (bench-peer, load average 4 to 8), and less CPU per retrieval.
//
// SQLite gets more slots than connections because its writes are group-committed (audit.UpdateOne's batches):
// a claim or a delivery record waits for the one commit in progress, then commits with every other that queued
// meanwhile, and the commit (its fsync, about 1 ms under this load, measured with strace) is what a retrieval
// waits on most. Four slots allowed four writes queued at most; with eight the batches grew (1.6 to 2.0-2.9
// writes a commit at c = 8). bench-peer, SQLite, c = 8, four alternating pairs (2 December 2026, seventh
// session): 379, 452, 476, 481 retrievals/s against 333, 415, 418, 310 with four slots, and 2.74 to 3.54 ms of
// server CPU per retrieval against 3.08 to 4.09; at c = 32, 578 and 488/s against 396 and 420. Sixteen gave
// no more than eight at c = 32. The stream bound stays small: eight streams hold at most 24 chunks of entries.
func retrievalSlots(db *gorm.DB) int {
	if db == nil {
		return 1
	}
	sqlDB, err := db.DB()
	if err != nil {
		return 1
	}
	conns := max(1, sqlDB.Stats().MaxOpenConnections)
	if store.DialectOf(db) != store.Postgres {
		return min(16, 2*conns)
	}
	return min(16, conns)
}
