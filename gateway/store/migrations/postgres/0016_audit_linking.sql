-- The audit chain without a lock held to commit (issue 15): a row is inserted by its change's transaction
-- with its content hash and no place in the chain (seq, prev_hash and hash NULL), and linked right after the
-- commit by one linker at a time (an advisory lock), which gives it the next seq. id orders rows as they are
-- inserted (a sequence: rollbacks leave holes in it, which is why it is not the chain position); existing rows
-- keep their seq as their id. added_at is when the row was inserted: audit verify fails on a row left unlinked
-- longer than a bound.
ALTER TABLE audit_events ADD COLUMN id BIGINT;
UPDATE audit_events SET id = seq;
CREATE SEQUENCE audit_events_id_seq OWNED BY audit_events.id;
SELECT setval('audit_events_id_seq', COALESCE((SELECT MAX(id) FROM audit_events), 0) + 1, false);
ALTER TABLE audit_events ALTER COLUMN id SET DEFAULT nextval('audit_events_id_seq'), ALTER COLUMN id SET NOT NULL;
ALTER TABLE audit_events DROP CONSTRAINT audit_events_pkey;
ALTER TABLE audit_events ADD PRIMARY KEY (id);
ALTER TABLE audit_events ALTER COLUMN seq DROP NOT NULL, ALTER COLUMN prev_hash DROP NOT NULL, ALTER COLUMN hash DROP NOT NULL;
ALTER TABLE audit_events ADD COLUMN content_hash TEXT, ADD COLUMN added_at TIMESTAMPTZ;
ALTER TABLE audit_events ADD CONSTRAINT audit_events_linked_whole
	CHECK ((seq IS NULL AND prev_hash IS NULL AND hash IS NULL) OR (seq IS NOT NULL AND prev_hash IS NOT NULL AND hash IS NOT NULL));
CREATE UNIQUE INDEX audit_events_seq ON audit_events (seq);
-- The linker's and verify's read: the few rows waiting.
CREATE INDEX audit_events_unlinked ON audit_events (id) WHERE seq IS NULL;
