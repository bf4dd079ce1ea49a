package approvals

import "errors"

// Sentinel errors callers branch on (to pick a page, a status code or a message).
var (
	ErrNotFound         = errors.New("not found")
	ErrForbidden        = errors.New("not allowed for this user")
	ErrOwnRequest       = errors.New("nobody decides on a request they filed")
	ErrSameOfficer      = errors.New("the second approval must come from another officer")
	ErrNotOpen          = errors.New("the request is no longer open to decisions")
	ErrNotPending       = errors.New("the request is not pending")
	ErrRateLimited      = errors.New("too many requests filed in the last 24 hours")
	ErrWidened          = errors.New("the scope may only be narrowed, never widened")
	ErrSecondMismatch   = errors.New("the second approval must approve the same scope, retriever and manifest as the first")
	ErrExpiryOutOfRange = errors.New("the extract lifetime is out of the policy's bounds")
	ErrReasonRequired   = errors.New("a denial needs a reason")
	ErrBadInput         = errors.New("invalid decision input")
	ErrEmptyManifest    = errors.New("the scope selects no entries")
	ErrNotEmpty         = errors.New("the scope selects entries: nothing recorded cannot be answered")
	ErrNoAssertion      = errors.New("no signature was given")
	ErrChallenge        = errors.New("the signature was made for another decision")
	ErrPreparation      = errors.New("the prepared decision is unknown, used or expired")

	ErrAlreadyRetrieved = errors.New("the extract was already retrieved")
	ErrExpired          = errors.New("the extract has expired")
	ErrRevoked          = errors.New("the extract was revoked")
	ErrNotRetriever     = errors.New("the extract is released to someone else")
)
