-- Patients' restrictions (issue 10, opposition and masking): a professional blocked, an entry or a category
-- masked, emergency access opposed; each recorded on the patient's written request and lifted the same way.
-- A row is one signed document: a recording (lifts = '') or a lifting (lifts = the restriction it lifts). It is
-- prepared (canonical form sealed: it names the patient, the target and the patient's reference), then
-- completed once with the WebAuthn assertion, kept so it can be re-checked. kind is in clear so that the
-- domain can ask "does this patient oppose emergency access" without opening anything; everything else that
-- says who or what is inside the sealed canonical form.
CREATE TABLE patient_restrictions (
	id TEXT PRIMARY KEY,
	patient_index TEXT NOT NULL,
	kind TEXT NOT NULL,
	lifts TEXT NOT NULL DEFAULT '',
	officer_id TEXT NOT NULL,
	canonical_sealed BYTEA NOT NULL,
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
	origin TEXT,
	-- Set once, on a recording, by the completed lifting (lifted_by) that ends it.
	lifted_at TIMESTAMPTZ,
	lifted_by TEXT
);
CREATE INDEX patient_restrictions_patient ON patient_restrictions (patient_index, kind);
