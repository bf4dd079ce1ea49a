-- A keyed blind index of each request's patient identifier (HMAC-SHA-256 of the normalised system|value), so
-- that a patient's access history is a lookup rather than a scan that opens every sealed identifier.
ALTER TABLE approval_requests ADD COLUMN patient_index TEXT NOT NULL DEFAULT '';
CREATE INDEX approval_requests_patient_index ON approval_requests (patient_index, filed_at);
