package records

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"gorm.io/gorm"
)

// Scope is what a request asks for: categories, and an optional care period. From and To are both inclusive.
type Scope struct {
	Categories []Category
	From, To   *time.Time
}

// ManifestEntry is one selected entry, as the officer sees it and as the extract renders it.
type ManifestEntry struct {
	ID           string     `json:"id"`
	Version      int        `json:"version"`
	ContentHash  string     `json:"content_hash"`
	Category     Category   `json:"category"`
	ResourceType string     `json:"resource_type"`
	Date         *time.Time `json:"date,omitempty"`
	Display      string     `json:"display"`
}

// Manifest is the exact list of entries a scope selects, and its digest.
type Manifest struct {
	PatientID string          `json:"patient_id"`
	Entries   []ManifestEntry `json:"entries"`
	Digest    string          `json:"digest"`
	// list, when set (ManifestOf), is the signed references, which rendering reads instead of Entries (then nil).
	list []EntryRef
	// demographics, when set (ManifestOf), is the patient's row as ManifestOf read it with the patient's id
	// (sealed), which rendering opens instead of reading it again.
	demographics []byte
}

// Len is the number of entries of the manifest.
func (m Manifest) Len() int {
	if m.list != nil {
		return len(m.list)
	}
	return len(m.Entries)
}

// ErrInvalidScope is wrapped when a scope names no category or an unknown one, or a period that ends before
// it starts.
var ErrInvalidScope = errors.New("invalid scope")

// Select returns the manifest of a scope: the latest version of every entry of the patient in the scope's
// categories, and, when the scope has a period, dated within it (entries without a date are only selected
// when the scope has no period). Entries are sorted by category (in the order of Categories), date (undated
// first), then id. An unknown identifier gives ErrNoPatient.
func (s *Service) Select(ctx context.Context, id Identifier, scope Scope) (Manifest, error) {
	if len(scope.Categories) == 0 {
		return Manifest{}, fmt.Errorf("%w: no category", ErrInvalidScope)
	}
	cats := make([]string, 0, len(scope.Categories))
	for _, c := range scope.Categories {
		if !c.Valid() {
			return Manifest{}, fmt.Errorf("%w: unknown category %q", ErrInvalidScope, shortName(string(c)))
		}
		cats = append(cats, string(c))
	}
	if scope.From != nil && scope.To != nil && scope.To.Before(*scope.From) {
		return Manifest{}, fmt.Errorf("%w: the period ends before it starts", ErrInvalidScope)
	}
	db := s.db.WithContext(ctx)
	pid, err := s.patientOf(db, id)
	if err != nil {
		return Manifest{}, err
	}
	q := db.Table("record_entries AS e").
		Select("e.id, e.version, e.content_hash, e.category, e.resource_type, e.effective_at, e.display").
		Where("e.patient_id = ? AND e.category IN ?", pid, cats).
		Where("e.version = (SELECT MAX(v.version) FROM record_entries v WHERE v.id = e.id)")
	if scope.From != nil {
		q = q.Where("e.effective_at >= ?", scope.From.UTC().Format(DateLayout))
	}
	if scope.To != nil {
		q = q.Where("e.effective_at <= ?", scope.To.UTC().Format(DateLayout))
	}
	var rows []struct {
		ID           string
		Version      int
		ContentHash  string
		Category     string
		ResourceType string
		EffectiveAt  *string
		Display      []byte
	}
	if err := q.Find(&rows).Error; err != nil {
		return Manifest{}, fmt.Errorf("select entries: %w", err)
	}
	m := Manifest{PatientID: pid, Entries: make([]ManifestEntry, 0, len(rows))}
	sl, err := s.sealerOf(db, pid)
	if err != nil {
		return Manifest{}, err
	}
	for _, r := range rows {
		display, err := sl.open("record_entries", "display", entryRowID(r.ID, r.Version), r.Display)
		if err != nil {
			return Manifest{}, err
		}
		e := ManifestEntry{ID: r.ID, Version: r.Version, ContentHash: r.ContentHash, Category: Category(r.Category),
			ResourceType: r.ResourceType, Display: string(display)}
		if r.EffectiveAt != nil {
			t, err := time.Parse(DateLayout, *r.EffectiveAt)
			if err != nil {
				return Manifest{}, fmt.Errorf("entry %s: stored date: %w", r.ID, err)
			}
			e.Date = &t
		}
		m.Entries = append(m.Entries, e)
	}
	SortEntries(m.Entries)
	m.Digest = ManifestDigest(m.Entries)
	return m, nil
}

// SortEntries puts entries in manifest order: category (as in Categories), date (undated first), id, version.
func SortEntries(es []ManifestEntry) {
	sort.Slice(es, func(i, j int) bool {
		a, b := es[i], es[j]
		if ra, rb := categoryRank(a.Category), categoryRank(b.Category); ra != rb {
			return ra < rb
		}
		if (a.Date == nil) != (b.Date == nil) {
			return a.Date == nil
		}
		if a.Date != nil && !a.Date.Equal(*b.Date) {
			return a.Date.Before(*b.Date)
		}
		if a.ID != b.ID {
			return a.ID < b.ID
		}
		return a.Version < b.Version
	})
}

// ManifestDigest is the SHA-256, in lower-case hex, of the manifest's canonical form, version 1:
//
//	"gatewayd-manifest-v1\n" then, for each entry sorted by id (bytewise) then version (numerically),
//	id + " " + decimal version + " " + content hash (lower-case hex) + "\n"
//
// It covers which entries, in which versions, with which content: nothing else (not the order of display,
// not the displays), so anyone holding the triples can recompute it.
func ManifestDigest(entries []ManifestEntry) string {
	type triple struct {
		id      string
		version int
		hash    string
	}
	ts := make([]triple, len(entries))
	for i, e := range entries {
		ts[i] = triple{e.ID, e.Version, e.ContentHash}
	}
	sort.Slice(ts, func(i, j int) bool {
		if ts[i].id != ts[j].id {
			return ts[i].id < ts[j].id
		}
		return ts[i].version < ts[j].version
	})
	h := sha256.New()
	h.Write([]byte("gatewayd-manifest-v1\n"))
	for _, t := range ts {
		h.Write([]byte(t.id + " " + strconv.Itoa(t.version) + " " + t.hash + "\n"))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// patientOf finds a patient's internal id by identifier, through the blind index.
func (s *Service) patientOf(db *gorm.DB, id Identifier) (string, error) {
	found, err := lookupKeys(db, []string{s.identifierIndex(id)})
	if err != nil {
		return "", err
	}
	for _, pid := range found {
		return pid, nil
	}
	return "", ErrNoPatient
}
