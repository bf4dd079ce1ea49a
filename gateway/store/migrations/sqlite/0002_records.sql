-- Records at rest (gateway/records). Everything that names or describes a patient is sealed with AES-256-GCM
-- (authenticated data "table|column|row id"); what stays in clear is only what selection needs: internal ids,
-- category, FHIR type, effective date and content hash.

-- A patient: a random internal id and the sealed demographics (name, birth date, gender, identifiers).
CREATE TABLE record_patients (
	id TEXT PRIMARY KEY,
	demographics BLOB NOT NULL,
	created_at TIMESTAMP NOT NULL,
	updated_at TIMESTAMP NOT NULL
);

-- The blind index: HMAC-SHA-256 of a normalised identifier (or of the patient's FHIR reference), hex.
CREATE TABLE record_patient_keys (
	blind_index TEXT PRIMARY KEY,
	patient_id TEXT NOT NULL REFERENCES record_patients (id)
);
CREATE INDEX record_patient_keys_patient ON record_patient_keys (patient_id);

-- Entries are immutable: a changed resource adds a version, never rewrites one.
-- effective_at is UTC in the fixed layout 2006-01-02T15:04:05.000000Z (sorts as text on both databases), or
-- NULL when the resource carries no date.
CREATE TABLE record_entries (
	id TEXT NOT NULL,
	version INTEGER NOT NULL,
	patient_id TEXT NOT NULL REFERENCES record_patients (id),
	category TEXT NOT NULL,
	resource_type TEXT NOT NULL,
	effective_at TEXT,
	content_hash TEXT NOT NULL,
	fhir_id BLOB NOT NULL,
	code BLOB NOT NULL,
	display BLOB NOT NULL,
	resource BLOB NOT NULL,
	source_file BLOB NOT NULL,
	imported_at TIMESTAMP NOT NULL,
	PRIMARY KEY (id, version)
);
CREATE INDEX record_entries_patient ON record_entries (patient_id, category, effective_at);
