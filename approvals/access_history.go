package approvals

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"gorm.io/gorm"

	"gatewayd/gateway/audit"
	"gatewayd/gateway/store"
)

// AccessHistory is a patient's full access history, printed on the patient's request (issue 10): every request
// filed about them, whatever became of it, with who asked, who decided, what was released and what happened to
// it, from the database and the audit chain. It holds ids, names of the people involved, codes and dates: no
// health data (the categories released, never the entries).
type AccessHistory struct {
	// PrintID names this printing; the audit row patient.history_printed records it.
	PrintID   string
	Patient   Identifier
	PrintedAt time.Time
	PrintedBy User
	// Requests are every request filed about the patient, oldest first.
	Requests []AccessRecord
	// Restrictions are every restriction the patient asked for (issue 10: a professional blocked, an entry or
	// a category masked, emergency access opposed), in force or lifted, oldest first.
	Restrictions []RestrictionRecord
	// PatientEvents are the audit rows about the patient as such (earlier printings of this history, listings
	// of their restrictions), oldest first.
	PatientEvents []audit.TrailEvent
	// Chain says whether the audit chain verified when the history was read, and how (audit.CheckTrail).
	Chain ChainCheck
	// People are the accounts the history names (requesters, officers, retrievers, audit actors), by id.
	People map[string]User
}

// ChainCheck is the outcome of checking the audit chain for a history: Verified, or the first row that does
// not fit. Verified says the chain verified from its start to row Through (hash Head, Rows rows held): the
// process walked it whole at WalkedAt up to row WalkedTo and the rows after it at this printing, and the
// Rechecked audit rows the history cites were re-hashed at this printing against the hashes verified then.
// A row before WalkedTo that the history does not cite is checked by the next whole walk (`gatewayd audit
// verify`, or the process's first printing after a restart), not by this one.
type ChainCheck struct {
	Verified  bool
	Rows      int64
	Through   int64
	Head      string
	WalkedAt  time.Time
	WalkedTo  int64
	Rechecked int
	BrokenAt  int64
	Reason    string
}

// AccessRecord is one request about the patient and what became of it.
type AccessRecord struct {
	RequestID  string
	Requester  User
	Purpose    Purpose
	Urgency    Urgency
	Categories []Category // asked for
	Status     Status
	FiledAt    time.Time
	UpdatedAt  time.Time
	// Emergency: filed with purpose "emergency" (the emergency access of issue 10).
	Emergency bool
	// EmergencyPrivileges: the emergency rules applied (one signature, short expiry, an IPS-shaped extract, a
	// post-hoc review); false for an emergency that the patient's opposition made an ordinary request.
	EmergencyPrivileges bool
	// EmergencyReviews are the post-hoc reviews of its emergency releases (issue 10, point 4).
	EmergencyReviews []EmergencyReviewRecord
	// Decisions are the signed decisions on the request (first and second approvals, denials, re-issues),
	// oldest first. Prepared but unsigned decisions are not decisions and are not listed.
	Decisions []DecisionRecord
	// Released are the categories of the entries the extracts released (none when nothing was released).
	Released []Category
	Extracts []ExtractRecord
	// Trail is what the audit says happened to the request and its extracts, oldest first; rows purged by
	// retention are listed by their summaries.
	Trail []audit.TrailEvent
}

// EmergencyReviewRecord is the post-hoc review of one emergency release: due when, and confirmed or flagged by
// whom and when, or still awaited (overdue past its deadline). The reviewer's reason is not printed.
type EmergencyReviewRecord struct {
	DecisionID string
	ReleasedAt time.Time
	DueAt      time.Time
	Verdict    string // ReviewConfirmed, ReviewFlagged or "" (awaited)
	Reviewer   User
	ReviewedAt *time.Time
	Overdue    bool
}

// RestrictionRecord is one restriction of the patient: what, on which written request, who signed it and
// when, and its lifting if it was lifted.
type RestrictionRecord struct {
	ID         string
	Kind       RestrictionKind
	Target     string // the professional id, entry id or category; "" for an opposition to emergency access
	Reference  string // the patient's written request
	RecordedBy User
	RecordedAt time.Time
	LiftedAt   *time.Time
	LiftedBy   User
	Trail      []audit.TrailEvent
}

// DecisionRecord is one signed decision.
type DecisionRecord struct {
	ID        string
	Officer   User
	Verdict   string
	SignedAt  time.Time
	ReissueOf string
}

// ExtractRecord is one extract a decision released and its fate: retrieved (when, by whom, complete or not),
// revoked, expired.
type ExtractRecord struct {
	ID               string
	DecisionID       string
	RetrieverKind    RetrieverKind
	Retriever        User // the named retriever; for staff, any staff member may retrieve
	Entries          int
	CreatedAt        time.Time
	ExpiresAt        time.Time
	RetrievedAt      *time.Time
	RetrievedBy      User
	DeliveryComplete *bool // nil: retrieved, but what was sent was never recorded
	RevokedAt        *time.Time
	RevokedBy        string // a user id, or RevokedByRestore
	ExpiredAt        *time.Time
}

// Errors of PrintAccessHistory.
var (
	ErrBadFormat = errors.New("unknown access history format")
)

// History formats, recorded in the audit row of a printing.
const (
	HistoryHTML = "html"
	HistoryFHIR = "fhir"
)

// PrintAccessHistory builds the access history of the patient named by id for an officer or the
// data-protection officer (userID), and records the printing (patient.history_printed: the print id, format,
// how many requests, whether the chain verified; ids and counts only) in the audit chain. An invalid
// identifier is a FieldErrors; a patient nobody asked about has an empty history, printed and audited too.
func (s *Service) PrintAccessHistory(ctx context.Context, userID string, id Identifier, format string) (AccessHistory, error) {
	u, err := s.officerOrDPO(ctx, userID)
	if err != nil {
		return AccessHistory{}, err
	}
	if format != HistoryHTML && format != HistoryFHIR {
		return AccessHistory{}, fmt.Errorf("%w: %q", ErrBadFormat, format)
	}
	id = Identifier{System: strings.TrimSpace(id.System), Value: strings.TrimSpace(id.Value)}
	if fe := id.fieldErrors(); len(fe) > 0 {
		return AccessHistory{}, fe
	}
	h := AccessHistory{PrintID: newID(), Patient: id, PrintedAt: s.clock().UTC(), PrintedBy: u}
	index := s.sealer.patientIndex(id)
	people := map[string]User{u.ID: u}
	person := func(id string) (User, error) {
		if id == "" {
			return User{}, nil
		}
		if p, ok := people[id]; ok {
			return p, nil
		}
		p, err := s.users.User(ctx, id)
		if errors.Is(err, ErrNoUser) {
			p, err = User{ID: id}, nil // an account removed since: its id is what the history can say
		}
		if err != nil {
			return User{}, err
		}
		people[id] = p
		return p, nil
	}
	if err := s.readAccessRecords(ctx, index, &h, person); err != nil {
		return AccessHistory{}, err
	}
	for _, ev := range h.events() {
		if uid, ok := strings.CutPrefix(ev.Actor, "user:"); ok {
			if _, err := person(uid); err != nil {
				return AccessHistory{}, err
			}
		}
	}
	h.People = people
	err = store.Tx(ctx, s.db, func(tx *gorm.DB) error {
		return audit.Append(tx, audit.Event{At: h.PrintedAt, Actor: "user:" + u.ID, Action: "patient.history_printed",
			Subject: "patient-index:" + index, Details: map[string]any{"print_id": h.PrintID, "format": format,
				"requests": len(h.Requests), "chain_verified": h.Chain.Verified}})
	})
	if err != nil {
		return AccessHistory{}, err
	}
	return h, nil
}

// events are every audit event the history holds.
func (h AccessHistory) events() []audit.TrailEvent {
	out := slices.Clone(h.PatientEvents)
	for _, r := range h.Requests {
		out = append(out, r.Trail...)
	}
	for _, r := range h.Restrictions {
		out = append(out, r.Trail...)
	}
	return out
}

// readAccessRecords reads the patient's requests, their signed decisions, their extracts and their audit trail,
// a few statements for the whole history (joined on the blind index), not a few per request: a patient may have thousands.
// It checks the audit chain and the rows the history cites, and says in h.Chain whether they verified.
func (s *Service) readAccessRecords(ctx context.Context, index string, h *AccessHistory, person func(string) (User, error)) error {
	// The audit trail is read and checked (audit.CheckTrail: the chain from the last row this process verified,
	// and every row the history cites re-hashed) beside the reads of the requests, on another connection: its
	// subjects are selected by the database from the same tables the reads below go through.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type checked struct {
		res   audit.TrailCheck
		trail []audit.TrailEvent
		err   error
	}
	check := make(chan checked, 1)
	go func() {
		var c checked
		c.res, c.trail, c.err = audit.CheckTrail(ctx, s.db, historySubjects, index, index, index, "patient-index:"+index)
		check <- c
	}()
	db := s.db.WithContext(ctx)
	var rows []requestRow
	if err := db.Select("id, requester_id, categories, purpose, urgency, status, filed_at, updated_at, emergency").
		Where("patient_index = ?", index).Order("filed_at, id").Find(&rows).Error; err != nil {
		return fmt.Errorf("access history: %w", err)
	}
	byID := make(map[string]*AccessRecord, len(rows))
	h.Requests = make([]AccessRecord, len(rows))
	for i, r := range rows {
		requester, err := person(r.RequesterID)
		if err != nil {
			return err
		}
		h.Requests[i] = AccessRecord{RequestID: r.ID, Requester: requester, Purpose: Purpose(r.Purpose),
			Urgency: Urgency(r.Urgency), Categories: splitCategories(r.Categories), Status: Status(r.Status),
			FiledAt: r.FiledAt.UTC(), UpdatedAt: r.UpdatedAt.UTC(), Emergency: Purpose(r.Purpose) == PurposeEmergency,
			EmergencyPrivileges: r.Emergency}
		byID[r.ID] = &h.Requests[i]
	}
	subjects := make(map[string]*AccessRecord, 2*len(rows))
	{
		var ds []decisionRow
		if err := ofPatient(db.Table("approval_decisions AS t"), index).
			Select("t.id, t.request_id, t.officer_id, t.verdict, t.completed_at, t.reissue_of").
			Where("t.completed_at IS NOT NULL").Order("t.completed_at, t.id").Find(&ds).Error; err != nil {
			return fmt.Errorf("access history: decisions: %w", err)
		}
		for _, d := range ds {
			off, err := person(d.OfficerID)
			if err != nil {
				return err
			}
			rec := byID[d.RequestID]
			rec.Decisions = append(rec.Decisions, DecisionRecord{ID: d.ID, Officer: off, Verdict: d.Verdict,
				SignedAt: d.CompletedAt.UTC(), ReissueOf: d.ReissueOf})
		}
		var reviews []emergencyReviewRow
		if err := ofPatient(db.Table("emergency_reviews AS t"), index).Select("t.*").
			Order("t.released_at, t.decision_id").Find(&reviews).Error; err != nil {
			return fmt.Errorf("access history: emergency reviews: %w", err)
		}
		for _, rv := range reviews {
			rec := byID[rv.RequestID]
			er := EmergencyReviewRecord{DecisionID: rv.DecisionID, ReleasedAt: rv.ReleasedAt.UTC(), DueAt: rv.DueAt.UTC(),
				ReviewedAt: utc(rv.ReviewedAt), Overdue: rv.ReviewedAt == nil && !rv.DueAt.After(h.PrintedAt)}
			if rv.Verdict != nil {
				er.Verdict = *rv.Verdict
			}
			if rv.ReviewerID != nil {
				reviewer, err := person(*rv.ReviewerID)
				if err != nil {
					return err
				}
				er.Reviewer = reviewer
			}
			rec.EmergencyReviews = append(rec.EmergencyReviews, er)
		}
		var xs []extractViewRow
		if err := ofPatient(db.Table("extracts AS t"), index).Select("t.id, t.request_id, t.decision_id, t.retriever_kind, " +
			"t.retriever_id, " + manifestColumn("t") + ", t.created_at, t.expires_at, t.retrieved_at, t.retrieved_by, t.revoked_at, t.revoked_by, " +
			"t.expired_at, t.delivered_at, t.delivery_complete").Order("t.created_at, t.id").Find(&xs).Error; err != nil {
			return fmt.Errorf("access history: extracts: %w", err)
		}
		for _, x := range xs {
			rec := byID[x.RequestID]
			xr, err := accessExtract(x, person)
			if err != nil {
				return err
			}
			var entries []ManifestEntry
			if err := json.Unmarshal([]byte(x.Manifest), &entries); err != nil {
				return fmt.Errorf("access history: extract %s: manifest: %w", x.ID, err)
			}
			xr.Entries = len(entries)
			rec.Extracts = append(rec.Extracts, xr)
			subjects["extract:"+x.ID] = rec
			for _, e := range entries {
				if !slices.Contains(rec.Released, e.Category) {
					rec.Released = append(rec.Released, e.Category)
				}
			}
		}
	}
	for i := range h.Requests {
		subjects["request:"+h.Requests[i].RequestID] = &h.Requests[i]
		slices.Sort(h.Requests[i].Released)
	}
	restrictions, err := s.readRestrictions(ctx, index, h, person)
	if err != nil {
		return err
	}
	c := <-check
	h.Chain = ChainCheck{Verified: true, Rows: c.res.Rows, Through: c.res.Through.Seq, Head: c.res.Through.Hash,
		WalkedAt: c.res.WalkedAt, WalkedTo: c.res.WalkedTo, Rechecked: c.res.Rechecked}
	var broken *audit.BrokenRowError
	switch {
	case errors.As(c.err, &broken):
		// A chain that does not fit is said on the page, and what is held is read by subject instead.
		h.Chain = ChainCheck{BrokenAt: broken.Seq, Reason: broken.Reason}
		all := make([]string, 0, len(subjects)+len(restrictions)+1)
		for sub := range subjects {
			all = append(all, sub)
		}
		for sub := range restrictions {
			all = append(all, sub)
		}
		all = append(all, "patient-index:"+index)
		slices.Sort(all) // the same statements for the same history
		if c.trail, c.err = audit.Trail(ctx, s.db, all); c.err != nil {
			return fmt.Errorf("access history: %w", c.err)
		}
	case c.err != nil:
		return fmt.Errorf("access history: verify the audit chain: %w", c.err)
	}
	patient := "patient-index:" + index
	for _, ev := range c.trail {
		if rec := subjects[ev.Subject]; rec != nil {
			rec.Trail = append(rec.Trail, ev)
		} else if r := restrictions[ev.Subject]; r != nil {
			r.Trail = append(r.Trail, ev)
		} else if ev.Subject == patient {
			h.PatientEvents = append(h.PatientEvents, ev)
		} // else about a request filed, or a restriction signed, while this was read: the next printing has it
	}
	return nil
}

// historySubjects selects the audit subjects of a patient's history from the patient's blind index (four
// arguments: the index three times, then the patient's own subject): their requests, the extracts of these,
// their signed restrictions and liftings, and the patient as such (printings, listings). The same rows
// readAccessRecords and readRestrictions read.
const historySubjects = `SELECT 'request:' || id FROM approval_requests WHERE patient_index = ?
	UNION ALL SELECT 'extract:' || x.id FROM extracts AS x JOIN approval_requests AS r ON r.id = x.request_id WHERE r.patient_index = ?
	UNION ALL SELECT 'restriction:' || id FROM patient_restrictions WHERE patient_index = ? AND completed_at IS NOT NULL
	UNION ALL SELECT CAST(? AS TEXT)`

// readRestrictions reads the patient's signed restrictions and their liftings (their canonical forms opened:
// a patient has a few) into h, and returns them by audit subject, recordings and liftings alike.
func (s *Service) readRestrictions(ctx context.Context, index string, h *AccessHistory, person func(string) (User, error)) (map[string]*RestrictionRecord, error) {
	var rows []restrictionRow
	if err := s.db.WithContext(ctx).Where("patient_index = ? AND completed_at IS NOT NULL", index).
		Order("completed_at, id").Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("access history: restrictions: %w", err)
	}
	liftings := map[string]restrictionRow{}
	for _, row := range rows {
		if row.Lifts != "" {
			liftings[row.Lifts] = row
		}
	}
	for _, row := range rows {
		if row.Lifts != "" {
			continue
		}
		r, err := s.openRestriction(row)
		if err != nil {
			return nil, err
		}
		by, err := person(row.OfficerID)
		if err != nil {
			return nil, err
		}
		rec := RestrictionRecord{ID: row.ID, Kind: r.Restriction, Target: r.Target, Reference: r.Reference,
			RecordedBy: by, RecordedAt: row.CompletedAt.UTC()}
		if l, ok := liftings[row.ID]; ok {
			rec.LiftedAt = utc(l.CompletedAt)
			if rec.LiftedBy, err = person(l.OfficerID); err != nil {
				return nil, err
			}
		}
		h.Restrictions = append(h.Restrictions, rec)
	}
	bySubject := map[string]*RestrictionRecord{}
	for i := range h.Restrictions {
		bySubject["restriction:"+h.Restrictions[i].ID] = &h.Restrictions[i]
	}
	for id, l := range liftings {
		if rec := bySubject["restriction:"+id]; rec != nil {
			bySubject["restriction:"+l.ID] = rec
		}
	}
	return bySubject, nil
}

// ofPatient narrows a query on a table of request-bound rows (aliased t) to the patient's requests: one join
// on the blind index rather than lists of thousands of request ids.
func ofPatient(q *gorm.DB, index string) *gorm.DB {
	return q.Joins("JOIN approval_requests AS r ON r.id = t.request_id").Where("r.patient_index = ?", index)
}

// accessExtract is an extract row as the history shows it, its people named.
func accessExtract(x extractViewRow, person func(string) (User, error)) (ExtractRecord, error) {
	xr := ExtractRecord{ID: x.ID, DecisionID: x.DecisionID, RetrieverKind: RetrieverKind(x.RetrieverKind),
		CreatedAt: x.CreatedAt.UTC(), ExpiresAt: x.ExpiresAt.UTC(), RetrievedAt: utc(x.RetrievedAt),
		DeliveryComplete: x.DeliveryComplete, RevokedAt: utc(x.RevokedAt), ExpiredAt: utc(x.ExpiredAt)}
	var err error
	if xr.Retriever, err = person(x.RetrieverID); err != nil {
		return xr, err
	}
	if x.RetrievedBy != nil {
		if xr.RetrievedBy, err = person(*x.RetrievedBy); err != nil {
			return xr, err
		}
	}
	if x.RevokedBy != nil {
		xr.RevokedBy = *x.RevokedBy
	}
	return xr, nil
}
