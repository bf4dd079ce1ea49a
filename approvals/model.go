package approvals

import (
	"slices"
	"strings"
	"time"
)

// Category is a kind of clinical entry a request may ask for.
type Category string

// The categories a request may name. The gateway maps records' own categories onto these.
const (
	Allergies     Category = "allergies"
	Treatments    Category = "treatments"
	Results       Category = "results"
	Conditions    Category = "conditions"
	Procedures    Category = "procedures"
	Immunizations Category = "immunizations"
	Documents     Category = "documents"
	Encounters    Category = "encounters"
)

// Categories lists every known category, in display order.
var Categories = []Category{Allergies, Treatments, Results, Conditions, Procedures, Immunizations, Documents, Encounters}

// Purpose is the coded reason for a request.
type Purpose string

const (
	PurposeCareContinuity Purpose = "care_continuity"
	PurposeEmergency      Purpose = "emergency"
	PurposeSecondOpinion  Purpose = "second_opinion"
	PurposeLegalRequest   Purpose = "legal_request"
	PurposeOther          Purpose = "other"
)

// Purposes lists every purpose code.
var Purposes = []Purpose{PurposeCareContinuity, PurposeEmergency, PurposeSecondOpinion, PurposeLegalRequest, PurposeOther}

// Urgency orders the officers' queue.
type Urgency string

const (
	Routine Urgency = "routine"
	Urgent  Urgency = "urgent"
)

// RetrieverKind says who may retrieve an extract: the requester over intake, or hospital staff on the console.
type RetrieverKind string

const (
	ToRequester RetrieverKind = "requester"
	ToStaff     RetrieverKind = "staff"
)

// Status is where a request is in its life.
type Status string

// A request awaiting a second officer has its own status rather than a flag: the queue, the requester's list
// and the lapse job all branch on it, and a status cannot be forgotten in a WHERE clause.
const (
	StatusPending        Status = "pending"
	StatusAwaitingSecond Status = "awaiting_second"
	StatusApproved       Status = "approved"
	StatusDenied         Status = "denied"
	StatusCancelled      Status = "cancelled"
	StatusLapsed         Status = "lapsed"
	// StatusNothingRecorded closes a request an officer answered, signed, that the scope holds no entry.
	StatusNothingRecorded Status = "nothing_recorded"
)

// Open says whether a decision can still be taken on a request in this status.
func (s Status) Open() bool { return s == StatusPending || s == StatusAwaitingSecond }

// Role is a user's single role.
type Role string

const (
	RoleRequester Role = "requester"
	RoleOfficer   Role = "officer"
	RoleStaff     Role = "staff"
	RoleAdmin     Role = "admin"
	// RoleDPO is the data-protection officer: prints patients' access histories, records their restrictions.
	RoleDPO Role = "dpo"
)

// Identifier names a patient: a system (for France, the INS OID) and a value, matched exactly after trimming.
type Identifier struct {
	System string `json:"system"`
	Value  string `json:"value"`
}

// Period is an optional care period, as dates (YYYY-MM-DD, inclusive). An empty bound is open.
type Period struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// IsZero says whether the period puts no bound at all.
func (p Period) IsZero() bool { return p.From == "" && p.To == "" }

// Contains says whether a date (YYYY-MM-DD) falls inside the period. Dates in this form compare as strings.
func (p Period) Contains(date string) bool {
	return (p.From == "" || date >= p.From) && (p.To == "" || date <= p.To)
}

// Within says whether p is at least as narrow as outer on both bounds.
func (p Period) Within(outer Period) bool {
	if outer.From != "" && (p.From == "" || p.From < outer.From) {
		return false
	}
	if outer.To != "" && (p.To == "" || p.To > outer.To) {
		return false
	}
	return true
}

// Scope is what a decision releases: one patient, some categories, an optional period, for a purpose.
type Scope struct {
	Patient    Identifier
	Categories []Category
	Period     Period
	Purpose    Purpose
}

// normalized returns the scope with its categories sorted and without duplicates, the form it is compared,
// stored and signed in.
func (s Scope) normalized() Scope {
	c := slices.Clone(s.Categories)
	slices.Sort(c)
	s.Categories = slices.Compact(c)
	return s
}

// Has says whether the scope names a category.
func (s Scope) Has(c Category) bool { return slices.Contains(s.Categories, c) }

// Within says whether s narrows (or equals) outer: same patient and purpose, a subset of its categories, a
// period inside its period.
func (s Scope) Within(outer Scope) bool {
	if s.Patient != outer.Patient || s.Purpose != outer.Purpose || len(s.Categories) == 0 {
		return false
	}
	for _, c := range s.Categories {
		if !outer.Has(c) {
			return false
		}
	}
	return s.Period.Within(outer.Period)
}

// Equal says whether two scopes are the same once normalized.
func (s Scope) Equal(o Scope) bool {
	a, b := s.normalized(), o.normalized()
	return a.Patient == b.Patient && a.Purpose == b.Purpose && a.Period == b.Period && slices.Equal(a.Categories, b.Categories)
}

func joinCategories(cs []Category) string {
	s := make([]string, len(cs))
	for i, c := range cs {
		s[i] = string(c)
	}
	return strings.Join(s, ",")
}

func splitCategories(s string) []Category {
	if s == "" {
		return nil
	}
	var out []Category
	for _, p := range strings.Split(s, ",") {
		out = append(out, Category(p))
	}
	return out
}

// Request is a filed request as callers see it (the patient identifier and justification opened).
type Request struct {
	ID            string
	RequesterID   string
	Scope         Scope
	Justification string
	Urgency       Urgency
	Delivery      RetrieverKind
	Status        Status
	FiledAt       time.Time
	UpdatedAt     time.Time
	// FirstOfficerID is the officer whose approval awaits a second signature (StatusAwaitingSecond).
	FirstOfficerID string
	// FinalDecisionID is the decision that closed the request (approved or denied).
	FinalDecisionID string
	// Reference is the requester's own reference for the request (optional, no health data).
	Reference string
	// Emergency says the request was filed with purpose emergency for a patient who did not oppose it: it
	// heads the queue (the decision checks the opposition again).
	Emergency bool
	// State is what a person reads about the request, filled by MyRequest(s) and StateOf.
	State RequestState
	// Traits are the INS identity traits filed with the request (sealed at rest; for the console only).
	Traits Traits
}

// requestRow is the stored form of a Request.
type requestRow struct {
	ID                  string
	RequesterID         string
	PatientSealed       []byte
	PatientIndex        string
	JustificationSealed []byte
	ReferenceSealed     []byte
	TraitsSealed        []byte
	Categories          string
	PeriodFrom          string
	PeriodTo            string
	Purpose             string
	Urgency             string
	Delivery            string
	Status              string
	FiledAt             time.Time
	UpdatedAt           time.Time
	FirstOfficerID      string
	FinalDecisionID     string
	Emergency           bool
	// QueueRank is read by Queue only (queueRank), never written.
	QueueRank int `gorm:"->"`
}

func (requestRow) TableName() string { return "approval_requests" }
