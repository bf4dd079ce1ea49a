-- Operating for years (issue 13): audit retention.

-- Where the held audit chain starts: the last purged row's sequence number and hash, how many rows were purged
-- in all, and when the last purge ran. audit verify walks from here instead of from the genesis; each purge
-- also appends an audit.purged row naming the same row, so the checkpoint cannot be moved unseen.
CREATE TABLE audit_checkpoint (
	id INTEGER PRIMARY KEY CHECK (id = 1),
	seq INTEGER NOT NULL,
	hash TEXT NOT NULL,
	purged INTEGER NOT NULL,
	purged_at TIMESTAMP
);
INSERT INTO audit_checkpoint (id, seq, hash, purged) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000', 0);

-- What a patient's access history keeps of a purged row about a request or an extract: what, who, when. No
-- details (they may hold counts and digests, never needed to tell who accessed what).
CREATE TABLE audit_summaries (
	seq INTEGER PRIMARY KEY,
	at TIMESTAMP NOT NULL,
	actor TEXT NOT NULL,
	action TEXT NOT NULL,
	subject TEXT NOT NULL
);
CREATE INDEX audit_summaries_subject ON audit_summaries (subject);
CREATE INDEX audit_events_at ON audit_events (at);
