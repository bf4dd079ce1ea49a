-- The audit chain's rows get an insertion id, a content hash and their insertion time, and seq, prev_hash and
-- hash may be NULL until the row is linked (see the PostgreSQL migration: there rows are linked right after
-- their transaction commits). On SQLite a writing transaction holds the single write lock anyway, so rows are
-- still linked in place; the schema is the same so that the code and verify are. SQLite cannot drop a primary
-- key: the table is rebuilt, existing rows keeping their seq as their id.
CREATE TABLE audit_events_linking (
	id INTEGER PRIMARY KEY,
	seq INTEGER UNIQUE,
	at TIMESTAMP NOT NULL,
	actor TEXT NOT NULL,
	action TEXT NOT NULL,
	subject TEXT NOT NULL,
	details TEXT NOT NULL,
	prev_hash TEXT,
	hash TEXT,
	content_hash TEXT,
	added_at TIMESTAMP,
	CHECK ((seq IS NULL AND prev_hash IS NULL AND hash IS NULL) OR (seq IS NOT NULL AND prev_hash IS NOT NULL AND hash IS NOT NULL))
);
INSERT INTO audit_events_linking (id, seq, at, actor, action, subject, details, prev_hash, hash)
	SELECT seq, seq, at, actor, action, subject, details, prev_hash, hash FROM audit_events;
DROP TABLE audit_events;
ALTER TABLE audit_events_linking RENAME TO audit_events;
CREATE INDEX audit_events_subject ON audit_events (subject);
CREATE INDEX audit_events_action_at ON audit_events (action, at);
CREATE INDEX audit_events_at ON audit_events (at);
CREATE INDEX audit_events_unlinked ON audit_events (id) WHERE seq IS NULL;
