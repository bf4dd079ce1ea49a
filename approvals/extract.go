package approvals

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"gorm.io/gorm"

	"gatewayd/gateway/audit"
	"gatewayd/gateway/store"
)

// ExtractState is read from an extract's columns, never stored.
type ExtractState string

const (
	ExtractReady     ExtractState = "ready"
	ExtractRetrieved ExtractState = "retrieved"
	ExtractExpired   ExtractState = "expired"
	ExtractRevoked   ExtractState = "revoked"
)

// Extract is a released, not yet produced, extract: what the signed manifest names, for whom, until when.
type Extract struct {
	ID             string
	RequestID      string
	DecisionID     string
	Retriever      RetrieverField
	Entries        []ManifestEntry // without displays
	ManifestDigest string
	CreatedAt      time.Time
	ExpiresAt      time.Time
	RetrievedAt    *time.Time
	RetrievedBy    string
	RevokedAt      *time.Time
	// Emergency is an extract released under the emergency rules: rendered as an IPS-shaped document.
	Emergency bool
	// claimer is the user whose claim returned this extract (ClaimExtract read them to check the claim), so
	// that DeliveryOf need not read them again.
	claimer *User
	// request is what DeliveryOf needs of the extract's request, read by the claim's own statement.
	request *claimedRequest
}

// claimedRequest is the part of an extract's request that rendering it needs (the patient, still sealed; the
// purpose; who filed it), read with the extract by the claim's one read.
type claimedRequest struct {
	RequesterID   string
	PatientSealed []byte
	Purpose       string
}

// State says where the extract is at time now.
func (x Extract) State(now time.Time) ExtractState {
	switch {
	case x.RetrievedAt != nil:
		return ExtractRetrieved
	case x.RevokedAt != nil:
		return ExtractRevoked
	case !x.ExpiresAt.After(now):
		return ExtractExpired
	}
	return ExtractReady
}

type extractRow struct {
	ID             string
	RequestID      string
	DecisionID     string
	RetrieverKind  string
	RetrieverID    string
	Manifest       string `gorm:"->"` // read only: the decision's (manifestColumn), never written with the extract
	ManifestDigest string
	CreatedAt      time.Time
	ExpiresAt      time.Time
	RetrievedAt    *time.Time
	RetrievedBy    *string
	RevokedAt      *time.Time
	RevokedBy      *string
	ExpiredAt      *time.Time
	Emergency      bool
}

func (extractRow) TableName() string { return "extracts" }

// manifestColumn is the select item that reads the manifest of the extract aliased x: its decision's. The
// extracts row has no copy (migration 0019): a claim and a delivery each update that row, and SQLite writes a
// whole row again on UPDATE, so a copy there was written twice more per retrieval (354 KB for the 2,000-entry
// extract of BenchmarkRetrieveExtract, under the write lock). A scalar subquery rather than a join: a join would make the columns the two
// tables share (id, request_id, created_at…) ambiguous in the callers' conditions. A read that leaves it out
// gets an empty manifest, which extract() refuses to decode.
func manifestColumn(x string) string {
	return "(SELECT d.manifest FROM approval_decisions AS d WHERE d.id = " + x + ".decision_id) AS manifest"
}

// withManifest reads extracts with their manifest.
func withManifest(db *gorm.DB) *gorm.DB {
	return db.Table("extracts").Select("extracts.*, " + manifestColumn("extracts"))
}

func (r extractRow) extract() (Extract, error) {
	return r.decode([]byte(r.Manifest))
}

// decode is extract with the manifest's bytes given (r.Manifest is not read).
func (r extractRow) decode(manifest []byte) (Extract, error) {
	x := Extract{ID: r.ID, RequestID: r.RequestID, DecisionID: r.DecisionID,
		Retriever:      RetrieverField{Kind: RetrieverKind(r.RetrieverKind), UserID: r.RetrieverID},
		ManifestDigest: r.ManifestDigest, CreatedAt: r.CreatedAt.UTC(), ExpiresAt: r.ExpiresAt.UTC(),
		RetrievedAt: utc(r.RetrievedAt), RevokedAt: utc(r.RevokedAt), Emergency: r.Emergency}
	if r.RetrievedBy != nil {
		x.RetrievedBy = *r.RetrievedBy
	}
	// JSON v2's decoder: a third of encoding/json's CPU for a manifest (150 entries: 85 µs against 255 µs),
	// and every claim decodes it (before its write: claimAfterRead). The stored manifest is
	// encoding/json's output from the same struct (names exact, valid UTF-8, no duplicates), which v2's
	// stricter defaults accept unchanged. The slice is made to size first (its entries counted by one of their
	// names, a hint only: Unmarshal appends to it): grown by the decoder, a 2,000-entry manifest allocated 937 KB
	// and took 1.63 ms to decode; made to size, 405 KB and 1.36 ms (a throwaway micro-benchmark, 2 December 2026).
	x.Entries = make([]ManifestEntry, 0, bytes.Count(manifest, []byte(`"content_hash":`)))
	if err := jsonv2.Unmarshal(manifest, &x.Entries); err != nil {
		return Extract{}, fmt.Errorf("extract %s: manifest: %w", r.ID, err)
	}
	return x, nil
}

func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// ExtractOf returns the latest extract of a request (ErrNotFound when there is none; a re-issue adds one).
// It checks no ownership: intake callers first read the request with MyRequest.
func (s *Service) ExtractOf(ctx context.Context, requestID string) (Extract, error) {
	var r extractRow
	err := withManifest(s.db.WithContext(ctx)).Where("request_id = ?", requestID).Order("created_at DESC").Take(&r).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return Extract{}, fmt.Errorf("extract of %s: %w", requestID, ErrNotFound)
	}
	if err != nil {
		return Extract{}, err
	}
	return r.extract()
}

// ClaimExtract takes an extract for retrieval by userID, once. The claim is one statement — set retrieved_at
// where it is still unset, not revoked, not expired and released to this user — that changes exactly one row
// or none, committed with its audit row. A refused claim (ErrNotFound, ErrRevoked, ErrAlreadyRetrieved,
// ErrExpired or ErrNotRetriever) is audited too, since a refused retrieval is a sign that someone else tried.
//
// The row is read first, outside any transaction (claimAfterRead): what can be refused is refused from that
// read, and the manifest is decoded before anything is written. The claim's own conditions decide, whatever
// the read saw: a claim that another retrieval or a revocation overtook between the read and the claim
// changes nothing, and the next read tells why.
func (s *Service) ClaimExtract(ctx context.Context, extractID, userID string) (Extract, error) {
	u, err := s.users.User(ctx, userID)
	if err != nil {
		return Extract{}, fmt.Errorf("claim extract: %w", err)
	}
	now := s.clock()
	for range maxClaimReads {
		x, refused, err := s.claimAfterRead(ctx, u, extractID, now)
		switch {
		case err != nil:
			return Extract{}, err
		case refused != nil:
			if err := audit.Record(ctx, s.db, audit.Event{At: now, Actor: "user:" + userID, Action: "extract.refused",
				Subject: "extract:" + extractID, Details: map[string]any{"reason": refusalCode(refused)}}); err != nil {
				return Extract{}, err
			}
			return Extract{}, fmt.Errorf("extract %s: %w", extractID, refused)
		case x.ID != "":
			return x, nil
		}
	}
	return Extract{}, fmt.Errorf("claim extract %s: overtaken %d times in a row", extractID, maxClaimReads)
}

// afterClaimRead, when a test sets it, runs between a claim's read and its write.
var afterClaimRead func()

// maxClaimReads bounds the reads of one claim. Each claim that is overtaken is overtaken by a change that
// makes the extract unclaimable (claimed, revoked), which the next read refuses: a second read is the most
// a claim needs.
const maxClaimReads = 3

// claimCondition is the claim's condition beyond the extract's id, and its arguments: still unclaimed, not
// revoked, not expired at now, and released to u (any staff member, or the named requester; nobody else).
func claimCondition(u User, now time.Time) (string, []any) {
	q, args := "retrieved_at IS NULL AND revoked_at IS NULL AND expires_at > ?", []any{now}
	switch {
	case !u.Active:
		q += " AND 1 = 0"
	case u.Role == RoleStaff:
		q += " AND retriever_kind = 'staff'"
	case u.Role == RoleRequester:
		q += " AND retriever_kind = 'requester' AND retriever_id = ?"
		args = append(args, u.ID)
	default:
		q += " AND 1 = 0"
	}
	return q, args
}

// refusalOf says why u cannot claim the extract row as read (found false: there is none), or nil if u can.
func refusalOf(u User, row extractRow, found bool, now time.Time) error {
	switch {
	case !found:
		return ErrNotFound
	case !isRetriever(u, row):
		// Anyone else learns nothing of the extract's state: the caller answers as for an unknown id.
		return ErrNotRetriever
	case row.RevokedAt != nil:
		return ErrRevoked
	case row.RetrievedAt != nil:
		return ErrAlreadyRetrieved
	case !row.ExpiresAt.After(now):
		return ErrExpired
	}
	return nil
}

// claimAfterRead reads the extract and what rendering needs of its request (one read, outside any
// transaction: the manifest, the retriever and the request's fields never change once the extract exists).
// A row that cannot be claimed is refused from that read (the refusal returned, for the caller to audit).
// Otherwise the manifest is decoded (one that does not decode fails the claim before anything is written),
// then the claim is written with its audit row (audit.UpdateOne: on PostgreSQL one statement that commits on
// its own, waiting for its flush as every commit does; on SQLite a transaction). A claim that changed no row
// (overtaken since the read) returns neither an extract nor a refusal.
//
// Why the read first: on PostgreSQL, two round trips where BEGIN, the claim, the audit row and COMMIT were
// four; on SQLite, the manifest decoded and the read done before the write lock is taken, and a plain UPDATE
// to compile instead of one returning every column and three subqueries (SQLite's driver compiles each
// statement at each execution). bench-peer, c = 8, alternating runs: SQLite 3.67-4.19 ms of server CPU per
// retrieval against 3.95-4.59 before. The read names its columns and is scanned by hand (store.QueryRow), the
// manifest into bytes that are decoded as they are: gorm's Take (statement building, reflection, the manifest
// copied into a string and copied back to bytes to decode) was 3.6 % of the server's CPU under bench-peer's
// load (SQLite, c = 8), the read itself included. The manifest comes from a join, not manifestColumn's scalar
// subquery, and on SQLite as a BLOB: SQLite copied a subquery's result into the outer row, then again to end
// it with the NUL a text value is handed out with (sqlite3VdbeMemMakeWriteable): for the 2,000-entry extract
// (a manifest of about 380 KB) those copies were 12 % of the server's CPU in TestBenchPeerMemory's profile.
// A missing decision leaves the manifest NULL, as the subquery did, which decode refuses.
func (s *Service) claimAfterRead(ctx context.Context, u User, extractID string, now time.Time) (Extract, error, error) {
	var (
		row      extractRow
		request  claimedRequest
		manifest []byte
	)
	db := s.db.WithContext(ctx)
	manifestCol := "d.manifest"
	if store.DialectOf(db) != store.Postgres {
		manifestCol = "CAST(d.manifest AS BLOB)"
	}
	err := store.QueryRow(ctx, db, `SELECT x.id, x.request_id, x.decision_id, x.retriever_kind, x.retriever_id,
			x.manifest_digest, x.created_at, x.expires_at, x.retrieved_at, x.retrieved_by, x.revoked_at, x.revoked_by,
			x.expired_at, x.emergency, q.requester_id, q.patient_sealed, q.purpose, `+manifestCol+`
		FROM extracts AS x JOIN approval_requests AS q ON q.id = x.request_id
			LEFT JOIN approval_decisions AS d ON d.id = x.decision_id WHERE x.id = ?`, extractID).
		Scan(&row.ID, &row.RequestID, &row.DecisionID, &row.RetrieverKind, &row.RetrieverID, &row.ManifestDigest,
			&row.CreatedAt, &row.ExpiresAt, &row.RetrievedAt, &row.RetrievedBy, &row.RevokedAt, &row.RevokedBy,
			&row.ExpiredAt, &row.Emergency, &request.RequesterID, &request.PatientSealed, &request.Purpose, &manifest)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return Extract{}, nil, fmt.Errorf("claim extract: %w", err)
	}
	if refused := refusalOf(u, row, err == nil, now); refused != nil {
		return Extract{}, refused, nil
	}
	x, err := row.decode(manifest)
	if err != nil {
		return Extract{}, nil, err
	}
	if afterClaimRead != nil {
		afterClaimRead()
	}
	ev := audit.Event{At: now, Actor: "user:" + u.ID, Action: "extract.retrieved", Subject: "extract:" + extractID,
		Details: map[string]any{"request": row.RequestID, "entries": len(x.Entries)}}
	cond, condArgs := claimCondition(u, now)
	claimed, err := audit.UpdateOne(ctx, s.db, "UPDATE extracts SET retrieved_at = ?, retrieved_by = ? WHERE id = ? AND "+cond,
		append([]any{now, u.ID, extractID}, condArgs...), ev)
	if err != nil {
		return Extract{}, nil, fmt.Errorf("claim extract: %w", err)
	}
	if !claimed {
		return Extract{}, nil, nil
	}
	at := now.UTC().Truncate(time.Microsecond) // as stored
	x.RetrievedAt, x.RetrievedBy = &at, u.ID
	x.claimer, x.request = &u, &request
	return x, nil, nil
}

// isRetriever says whether u is who the extract is released to: the named requester, or any staff member.
func isRetriever(u User, row extractRow) bool {
	switch {
	case !u.Active:
		return false
	case u.Role == RoleStaff:
		return row.RetrieverKind == string(ToStaff)
	case u.Role == RoleRequester:
		return row.RetrieverKind == string(ToRequester) && row.RetrieverID == u.ID
	}
	return false
}

func refusalCode(err error) string {
	switch err {
	case ErrNotFound:
		return "not_found"
	case ErrRevoked:
		return "revoked"
	case ErrAlreadyRetrieved:
		return "already_retrieved"
	case ErrExpired:
		return "expired"
	}
	return "not_retriever"
}

// RevokeExtract withdraws an extract not yet retrieved, unsigned. The console revokes with a signature
// (PrepareRevocation, CompleteRevocation); this stays for tools and tests that need a revoked extract.
func (s *Service) RevokeExtract(ctx context.Context, officerID, extractID string) error {
	if _, err := s.officer(ctx, officerID); err != nil {
		return err
	}
	now := s.clock()
	return store.Tx(ctx, s.db, func(tx *gorm.DB) error {
		res := tx.Exec("UPDATE extracts SET revoked_at = ?, revoked_by = ? WHERE id = ? AND retrieved_at IS NULL AND revoked_at IS NULL",
			now, officerID, extractID)
		if res.Error != nil {
			return fmt.Errorf("revoke extract: %w", res.Error)
		}
		if res.RowsAffected != 1 {
			var row extractRow
			if err := tx.Where("id = ?", extractID).Take(&row).Error; errors.Is(err, gorm.ErrRecordNotFound) {
				return fmt.Errorf("extract %s: %w", extractID, ErrNotFound)
			} else if err != nil {
				return err
			}
			if row.RetrievedAt != nil {
				return fmt.Errorf("extract %s: %w", extractID, ErrAlreadyRetrieved)
			}
			return fmt.Errorf("extract %s: %w", extractID, ErrRevoked)
		}
		return audit.Append(tx, audit.Event{At: now, Actor: "user:" + officerID, Action: "extract.revoked",
			Subject: "extract:" + extractID})
	})
}

// entries returns the manifest's entries (nil when the stored JSON does not parse, which extract() reports).
func (r extractRow) entries() []ManifestEntry {
	var es []ManifestEntry
	_ = json.Unmarshal([]byte(r.Manifest), &es)
	return es
}
