// Package approvals is the domain core of the gateway: requests filed by remote doctors, the scope they ask
// for, the policy that bounds decisions, officers' decisions signed with a WebAuthn key in a canonical form,
// the receipts that let anyone re-check a signature offline, and the one-time extracts a final approval
// releases.
//
// It knows no HTTP. What it needs from records, identity and the clock it declares as small interfaces
// (deps.go) that the gateway wires in. Every transition is one transaction (store.Tx) holding its audit row
// (audit.Append): nothing changes without its trace.
//
// Wiring (the gateway's part): build one Service with approvals.New(Deps{DB, Records, Signer, Users, Policy,
// SealKey: master.Derive(keys.PurposeApprovals)}); adapt gateway/records to Records (its error for an unknown
// identifier must wrap ErrNoPatient), gateway/identity to Signer (webauthn.WithChallenge over the challenge
// given, user verification required, ceremony stored and consumed once) and to Users; start RunJobs in
// serve. Intake handlers call FileRequest, MyRequests, MyRequest, CancelRequest and ClaimExtract; console
// handlers call Queue, OpenReview, PrepareDecision, CompleteDecision and ClaimExtract. A FieldErrors error
// lists {"field","code"} pairs to show next to the fields or return as JSON.
//
// Identity vigilance: a Filing may carry the INS identity Traits (sealed like the identifier, never logged,
// never returned to the requester). OpenReview compares them trait by trait with the records' Patient
// (Records.Traits; Review.Identity: match, differs, missing); PrepareDecision refuses an approval while a trait
// differs (ErrTraitsDiffer) unless DecisionInput.IdentityOverride gives a reason, signed in the decision as
// identity_override (Decision.IdentityOverride) and printed by its Summary (the receipt). Filing never asks
// the records, so the requester's answers cannot depend on whether the patient exists or matches.
//
// Extracts at retrieval: ClaimExtract (one atomic UPDATE, committed with its audit row), then DeliverExtract,
// which renders exactly the signed manifest through Deps.Renderer (the gateway adapts gateway/records, so no
// intake handler touches the records) and records what was sent (extract.delivered: SHA-256, size, complete). Lists:
// ExtractsFor, ExtractView. An officer revokes a ready extract with a signature (PrepareRevocation,
// CompleteRevocation; VerifyRevocation re-checks it offline) and re-issues one whose delivery broke with a new
// signed decision (PrepareReissue, then CompleteDecision).
//
// Patients' restrictions (restriction*.go): on the patient's written request an officer or the data-protection
// officer records, signed like a decision, a blocked professional, a masked entry or category, or an opposition
// to emergency access (PrepareRestriction, CompleteRestriction) and lifts it the same way (PrepareLift, CompleteRestriction);
// VerifyRestriction re-checks one; Restrictions gathers a patient's page (RestrictionPatient finds the patient
// of a restriction id). Enforced here, not in pages: every manifest comes through selectUnmasked (masked
// entries never enter one, the review counts them in Review.Masked); an approval of a blocked professional's
// request is refused (ErrBlocked, Review.Blocked) at preparation and again inside the completing transaction;
// a block or mask revokes the ready extracts it touches. Emergency access asks
// emergencyOpposed(ctx, db, patient Identifier) inside its own transaction: true means the patient is
// treated like any other.
//
// Emergency access (emergency.go, emergency_review.go, alert.go): purpose emergency holds the minimum dataset
// only (FieldError code emergency_minimum); unless emergencyOpposed, it heads the Queue, CompleteDecision
// releases it on one signature (Decision.Emergency, signed), its extract lives at most
// Policy.EmergencyExtractTTL and renders as an IPS-shaped document (RenderJob.Emergency). Each emergency
// release awaits a post-hoc review (EmergencyReviews, ReviewEmergency by another person, OverdueEmergencyReviews
// for the officers' home); RunOverdueReviews (in RunJobs) audits each overdue one once. Filings and overdue
// reviews write alerts to an outbox in their own transaction; the gateway sends them (ClaimAlerts, AlertSent).
package approvals
