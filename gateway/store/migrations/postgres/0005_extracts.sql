-- Extracts at retrieval (issue 6): what was delivered, signed revocations, and re-issues after a broken delivery.
-- Nothing of an extract's content is stored: only the SHA-256 and size of the bytes sent.

-- The delivery of a claimed extract: written after the stream ends, complete or not.
ALTER TABLE extracts ADD COLUMN delivered_at TIMESTAMPTZ;
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
	challenge BYTEA NOT NULL,
	ceremony_id TEXT NOT NULL,
	prepared_at TIMESTAMPTZ NOT NULL,
	prepared_until TIMESTAMPTZ NOT NULL,
	completed_at TIMESTAMPTZ,
	credential_id BYTEA,
	public_key BYTEA,
	authenticator_data BYTEA,
	client_data_json BYTEA,
	signature BYTEA,
	rp_id TEXT,
	origin TEXT
);
CREATE INDEX extract_revocations_extract ON extract_revocations (extract_id);
