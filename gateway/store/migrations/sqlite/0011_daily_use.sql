-- Daily use (issue 9): the requester's own reference for a request, optional, sealed like the justification
-- (a free text may hold what it should not). Empty (NULL) for requests filed before, or without one.
ALTER TABLE approval_requests ADD COLUMN reference_sealed BLOB;
