-- Emergency access and alerts (issue 10, points 4 and 5).

-- A request filed with purpose "emergency" for a patient who does not oppose emergency access: it heads the
-- queue. Set at filing; the decision checks the opposition again (it may be recorded in between).
ALTER TABLE approval_requests ADD COLUMN emergency BOOLEAN NOT NULL DEFAULT FALSE;
-- A decision (and its extract) that used the emergency privileges: one signature, the short expiry, the
-- IPS-shaped Bundle. The signed canonical form says so too.
ALTER TABLE approval_decisions ADD COLUMN emergency BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE extracts ADD COLUMN emergency BOOLEAN NOT NULL DEFAULT FALSE;

-- Every emergency release awaits a post-hoc review by a second officer (another person than the signer), who
-- confirms or flags it before due_at. overdue_at is set once, by the jobs runner, with its audit row.
CREATE TABLE emergency_reviews (
	decision_id TEXT PRIMARY KEY,
	request_id TEXT NOT NULL,
	extract_id TEXT NOT NULL,
	officer_id TEXT NOT NULL,
	released_at TIMESTAMPTZ NOT NULL,
	due_at TIMESTAMPTZ NOT NULL,
	reviewer_id TEXT,
	verdict TEXT,
	reason_sealed BYTEA,
	reviewed_at TIMESTAMPTZ,
	overdue_at TIMESTAMPTZ
);
CREATE INDEX emergency_reviews_open ON emergency_reviews (reviewed_at, due_at);

-- Alerts waiting to be sent (an outbox): written in the transaction of what they announce, sent after commit
-- by one instance at a time (claimed_until is a lease), at least once. Ids, counts and urgency only.
CREATE TABLE alerts (
	id TEXT PRIMARY KEY,
	kind TEXT NOT NULL,
	urgency TEXT NOT NULL,
	subject TEXT NOT NULL,
	queue_count INTEGER NOT NULL,
	created_at TIMESTAMPTZ NOT NULL,
	claimed_until TIMESTAMPTZ,
	sent_at TIMESTAMPTZ
);
CREATE INDEX alerts_unsent ON alerts (sent_at, created_at);
