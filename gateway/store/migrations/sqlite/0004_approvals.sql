-- Approvals: requests filed on intake, officers' decisions (prepared, then signed), their receipts, and the
-- extracts a final approval releases. Columns ending in _sealed are AES-256-GCM ciphertexts (approvals.seal):
-- the patient identifier, the justification, the canonical decision and what the page showed never sit in
-- clear in the database.
CREATE TABLE approval_requests (
	id TEXT PRIMARY KEY,
	requester_id TEXT NOT NULL,
	patient_sealed BLOB NOT NULL,
	justification_sealed BLOB NOT NULL,
	categories TEXT NOT NULL,
	period_from TEXT NOT NULL,
	period_to TEXT NOT NULL,
	purpose TEXT NOT NULL,
	urgency TEXT NOT NULL,
	delivery TEXT NOT NULL,
	status TEXT NOT NULL,
	filed_at TIMESTAMP NOT NULL,
	updated_at TIMESTAMP NOT NULL,
	first_officer_id TEXT NOT NULL DEFAULT '',
	final_decision_id TEXT NOT NULL DEFAULT ''
);
CREATE INDEX approval_requests_requester ON approval_requests (requester_id, filed_at);
CREATE INDEX approval_requests_status ON approval_requests (status, filed_at);

-- A decision is prepared (canonical form built, challenge issued) and then completed once with a signature.
CREATE TABLE approval_decisions (
	id TEXT PRIMARY KEY,
	request_id TEXT NOT NULL REFERENCES approval_requests (id),
	officer_id TEXT NOT NULL,
	verdict TEXT NOT NULL,
	-- the request's status when the decision was prepared: completing it requires the same status still.
	request_status TEXT NOT NULL,
	canonical_sealed BLOB NOT NULL,
	challenge BLOB NOT NULL,
	ceremony_id TEXT NOT NULL,
	manifest TEXT NOT NULL,
	manifest_digest TEXT NOT NULL,
	retriever_kind TEXT NOT NULL,
	retriever_id TEXT NOT NULL,
	extract_expires_at TIMESTAMP,
	shown_sealed BLOB NOT NULL,
	prepared_at TIMESTAMP NOT NULL,
	prepared_until TIMESTAMP NOT NULL,
	completed_at TIMESTAMP
);
CREATE INDEX approval_decisions_request ON approval_decisions (request_id);

-- What a signed decision leaves behind: enough to check the signature offline (gatewayd receipt verify).
CREATE TABLE approval_receipts (
	decision_id TEXT PRIMARY KEY REFERENCES approval_decisions (id),
	request_id TEXT NOT NULL REFERENCES approval_requests (id),
	officer_id TEXT NOT NULL,
	canonical_sealed BLOB NOT NULL,
	credential_id BLOB NOT NULL,
	public_key BLOB NOT NULL,
	authenticator_data BLOB NOT NULL,
	client_data_json BLOB NOT NULL,
	signature BLOB NOT NULL,
	rp_id TEXT NOT NULL,
	origin TEXT NOT NULL,
	shown_sealed BLOB NOT NULL,
	created_at TIMESTAMP NOT NULL
);
CREATE INDEX approval_receipts_request ON approval_receipts (request_id);

-- An extract holds no content: only what the signed manifest names, who may retrieve it and until when.
-- Its state is read from the columns: ready, retrieved, expired (expires_at passed), revoked.
CREATE TABLE extracts (
	id TEXT PRIMARY KEY,
	request_id TEXT NOT NULL REFERENCES approval_requests (id),
	decision_id TEXT NOT NULL REFERENCES approval_decisions (id),
	retriever_kind TEXT NOT NULL,
	retriever_id TEXT NOT NULL,
	manifest TEXT NOT NULL,
	manifest_digest TEXT NOT NULL,
	created_at TIMESTAMP NOT NULL,
	expires_at TIMESTAMP NOT NULL,
	retrieved_at TIMESTAMP,
	retrieved_by TEXT,
	revoked_at TIMESTAMP,
	revoked_by TEXT,
	expired_at TIMESTAMP
);
CREATE UNIQUE INDEX extracts_request ON extracts (request_id);
CREATE INDEX extracts_expires ON extracts (expires_at);
