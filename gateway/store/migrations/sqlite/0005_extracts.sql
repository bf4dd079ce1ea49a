-- Extracts at retrieval (issue 6): what was delivered, signed revocations, and re-issues after a broken delivery.
-- Nothing of an extract's content is stored: only the SHA-256 and size of the bytes sent.

-- The delivery of a claimed extract: written after the stream ends, complete or not.
ALTER TABLE extracts ADD COLUMN delivered_at TIMESTAMP;
ALTER TABLE extracts ADD COLUMN delivery_sha256 TEXT;
ALTER TABLE extracts ADD COLUMN delivery_bytes BIGINT;
ALTER TABLE extracts ADD COLUMN delivery_complete BOOLEAN;
-- Set on an extract whose broken delivery an officer re-issued: the decision that released the new extract.
ALTER TABLE extracts ADD COLUMN reissued_by TEXT;

-- A re-issue releases a new extract on the same, already approved, request: several extracts per request.
DROP INDEX extracts_request;
CREATE INDEX extracts_request ON extracts (request_id, created_at);

-- A decision that re-issues names the extract whose delivery broke.
ALTER TABLE approval_decisions ADD COLUMN reissue_of TEXT NOT NULL DEFAULT '';

-- An officer's revocation of a ready extract, signed like a decision: prepared (canonical form, challenge),
-- then completed once with the WebAuthn assertion, which is kept so it can be re-checked offline.
CREATE TABLE extract_revocations (
	id TEXT PRIMARY KEY,
	extract_id TEXT NOT NULL REFERENCES extracts (id),
	officer_id TEXT NOT NULL,
	canonical TEXT NOT NULL,
	challenge BLOB NOT NULL,
	ceremony_id TEXT NOT NULL,
	prepared_at TIMESTAMP NOT NULL,
	prepared_until TIMESTAMP NOT NULL,
	completed_at TIMESTAMP,
	credential_id BLOB,
	public_key BLOB,
	authenticator_data BLOB,
	client_data_json BLOB,
	signature BLOB,
	rp_id TEXT,
	origin TEXT
);
CREATE INDEX extract_revocations_extract ON extract_revocations (extract_id);
