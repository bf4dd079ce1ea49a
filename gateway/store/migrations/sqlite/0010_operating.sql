-- Operating for years (issue 13): audit retention, envelope encryption with master key versions.

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

-- Master key versions the key file holds (gateway/keys): the check value of each, so that a wrong key file is
-- refused; a retired version wraps nothing any more and is gone from the key file.
CREATE TABLE master_keys (
	version INTEGER PRIMARY KEY,
	check_value TEXT NOT NULL,
	created_at TIMESTAMP NOT NULL,
	retired_at TIMESTAMP
);

-- Data keys, each wrapped (AES-256-GCM, authenticated data "data_keys|id|vN") by one master key version:
-- "system:root" (what the sub-keys are derived from) and "patient:<id>" (what a patient's rows are sealed
-- with). Rotating the master key re-wraps these rows and nothing else. The data step that wraps the root of a
-- database from before this migration runs at the first start (keys.Bind): it needs the key file.
CREATE TABLE data_keys (
	id TEXT PRIMARY KEY,
	master_version INTEGER NOT NULL REFERENCES master_keys (version),
	wrapped BLOB NOT NULL,
	created_at TIMESTAMP NOT NULL
);
CREATE INDEX data_keys_master_version ON data_keys (master_version);
