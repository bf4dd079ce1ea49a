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
	canonical_sealed BLOB NOT NULL,
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
	origin TEXT,
	-- Set once, on a recording, by the completed lifting (lifted_by) that ends it.
	lifted_at TIMESTAMP,
	lifted_by TEXT
);
CREATE INDEX patient_restrictions_patient ON patient_restrictions (patient_index, kind);
