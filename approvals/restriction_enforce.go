package approvals

import (
	"context"
	"fmt"
	"strings"
	"time"

	"gorm.io/gorm"

	"gatewayd/gateway/audit"
	"gatewayd/gateway/store"
)

// restrictionSet is what a patient's restrictions in force mean for a manifest and a requester.
type restrictionSet struct {
	blocked    map[string]bool // professional ids
	entries    map[string]bool // masked entry ids (every version)
	categories map[Category]bool
}

// restrictionsOf reads the patient's restrictions in force, in db (the enforcing transaction when there is
// one).
func (s *Service) restrictionsOf(ctx context.Context, db *gorm.DB, patient Identifier) (restrictionSet, error) {
	rs := newRestrictionSet()
	active, err := s.restrictionsInForce(ctx, db, s.sealer.patientIndex(patient))
	if err != nil {
		return rs, err
	}
	for _, r := range active {
		rs.add(r)
	}
	return rs, nil
}

func newRestrictionSet() restrictionSet {
	return restrictionSet{blocked: map[string]bool{}, entries: map[string]bool{}, categories: map[Category]bool{}}
}

func (rs restrictionSet) add(r Restriction) {
	switch r.Restriction {
	case BlockProfessional:
		rs.blocked[r.Target] = true
	case MaskEntry:
		rs.entries[r.Target] = true
	case MaskCategory:
		rs.categories[Category(r.Target)] = true
	}
}

// masks says whether an entry is masked.
func (rs restrictionSet) masks(e ManifestEntry) bool {
	return rs.entries[e.ID] || rs.categories[e.Category]
}

// blocks says whether the patient blocked this user's professional id.
func (rs restrictionSet) blocks(u User) bool {
	p := strings.TrimSpace(u.ProfessionalID)
	return p != "" && rs.blocked[p]
}

// unmasked returns the manifest without its masked entries and how many it left out. The records' digest
// covered the masked entries too, so it is dropped when any is left out (approvals computes its own).
func (rs restrictionSet) unmasked(m Manifest) (Manifest, int) {
	kept := make([]ManifestEntry, 0, len(m.Entries))
	for _, e := range m.Entries {
		if !rs.masks(e) {
			kept = append(kept, e)
		}
	}
	masked := len(m.Entries) - len(kept)
	if masked > 0 {
		m.Digest = ""
	}
	m.Entries = kept
	return m, masked
}

// selectUnmasked is the only way approvals asks the records for a manifest: what the scope selects today,
// masked entries (rs, the patient's restrictions) left out — they never enter a manifest, so never an extract
// nor a digest — with how many were masked (the review page says how many, never which).
func (s *Service) selectUnmasked(ctx context.Context, scope Scope, rs restrictionSet) (Manifest, int, error) {
	m, err := s.records.Select(ctx, scope.Patient, scope)
	if err != nil {
		return Manifest{}, 0, err
	}
	m, masked := rs.unmasked(m)
	return m, masked, nil
}

// blocksRequester says whether the patient (rs) blocked the requester of req. The requester's account is
// read only when the patient blocked someone.
func (s *Service) blocksRequester(ctx context.Context, rs restrictionSet, requesterID string) (bool, error) {
	if len(rs.blocked) == 0 {
		return false, nil
	}
	requester, err := s.users.User(ctx, requesterID)
	if err != nil {
		return false, fmt.Errorf("requester %s: %w", requesterID, err)
	}
	return rs.blocks(requester), nil
}

// checkBlocked refuses, audited like the other refusals of a decision, an approval of a request whose
// requester the patient blocked. The officer is told why (ErrBlocked); the requester's answers do not change.
func (s *Service) checkBlocked(ctx context.Context, officer User, req Request, rs restrictionSet) error {
	blocked, err := s.blocksRequester(ctx, rs, req.RequesterID)
	if err != nil || !blocked {
		return err
	}
	return s.refuseDecision(ctx, officer, req, "blocked", ErrBlocked)
}

// enforceRestrictions is the last check of an approval, inside the transaction that completes it: a block or
// a mask recorded between preparation and signature voids the approval (the officer prepares again).
func (s *Service) enforceRestrictions(ctx context.Context, tx *gorm.DB, patient Identifier, requestID string, entries []ManifestEntry) error {
	if err := lockPatient(tx, s.sealer.patientIndex(patient)); err != nil {
		return err
	}
	rs, err := s.restrictionsOf(ctx, tx, patient)
	if err != nil {
		return err
	}
	if len(rs.blocked) > 0 {
		row, err := s.requestRow(ctx, tx, requestID)
		if err != nil {
			return err
		}
		if blocked, err := s.blocksRequester(ctx, rs, row.RequesterID); err != nil {
			return err
		} else if blocked {
			return ErrBlocked
		}
	}
	for _, e := range entries {
		if rs.masks(e) {
			return ErrMasked
		}
	}
	return nil
}

// restrictedExtracts finds the patient's ready extracts a block or a mask being put in force touches: one
// from the blocked professional, or one whose signed manifest holds a masked entry. revokeRestricted then
// revokes them in the transaction that puts the restriction in force: the restriction is the officer's signed
// act, so the revocation is signed by it; the requester reads "revoked", as for any revocation. Candidates are
// read in that transaction (db), under the patient's lock (lockPatient), so an approval completed at the same
// moment is either seen here or sees the restriction; the update re-checks that each is still ready.
func (s *Service) restrictedExtracts(ctx context.Context, db *gorm.DB, index string, r Restriction, now time.Time) ([]string, error) {
	if r.Restriction == OpposeEmergency {
		return nil, nil
	}
	var rows []struct {
		ID          string
		RequesterID string
		Manifest    string
	}
	err := db.WithContext(ctx).Table("extracts AS x").Select("x.id, q.requester_id, "+manifestColumn("x")).
		Joins("JOIN approval_requests q ON q.id = x.request_id").
		Where("q.patient_index = ? AND x.retrieved_at IS NULL AND x.revoked_at IS NULL AND x.expires_at > ?", index, now).
		Scan(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("restricted extracts: %w", err)
	}
	one := newRestrictionSet()
	one.add(r)
	var ids []string
	for _, row := range rows {
		hit := false
		if r.Restriction == BlockProfessional {
			u, err := s.users.User(ctx, row.RequesterID)
			if err != nil {
				return nil, fmt.Errorf("requester of extract %s: %w", row.ID, err)
			}
			hit = one.blocks(u)
		} else {
			for _, e := range (extractRow{Manifest: row.Manifest}).entries() {
				hit = hit || one.masks(e)
			}
		}
		if hit {
			ids = append(ids, row.ID)
		}
	}
	return ids, nil
}

// revokeRestricted revokes the extracts restrictedExtracts found, each with its audit row, in tx.
func revokeRestricted(tx *gorm.DB, ids []string, officerID, restrictionID string, now time.Time) error {
	for _, id := range ids {
		res := tx.Exec("UPDATE extracts SET revoked_at = ?, revoked_by = ? WHERE id = ? AND retrieved_at IS NULL AND revoked_at IS NULL",
			now, officerID, id)
		if res.Error != nil {
			return fmt.Errorf("revoke extract %s: %w", id, res.Error)
		}
		if res.RowsAffected != 1 {
			continue // retrieved (or revoked) in between: nothing left to withdraw
		}
		if err := audit.Append(tx, audit.Event{At: now, Actor: "user:" + officerID, Action: "extract.revoked",
			Subject: "extract:" + id, Details: map[string]any{"restriction": restrictionID, "signed": true}}); err != nil {
			return err
		}
	}
	return nil
}

// lockPatient serialises, per patient, the two transactions that must see each other: an approval being
// completed (which checks the restrictions in force) and a restriction being put in force (which revokes the
// ready extracts it touches). Without it, on PostgreSQL's read committed, both could commit having each read
// the state before the other: an approval of a blocked professional, or a masked entry in a ready extract
// (TestBlockAndApprovalAtOnce). SQLite's immediate transactions already hold the single write lock.
func lockPatient(tx *gorm.DB, index string) error {
	if store.DialectOf(tx) != store.Postgres {
		return nil
	}
	return tx.Exec("SELECT pg_advisory_xact_lock(727010, hashtext(?))", index).Error
}
