-- The data-protection officer (issue 10): a console role that prints patients' access histories and records
-- their restrictions. The role checks of users and invitations accept it.
--
-- SQLite cannot alter a CHECK constraint: both tables are rebuilt. The migration runs in one transaction, where
-- foreign keys cannot be switched off; deferring them lets credentials, sessions and invitations point at no
-- user between the DROP and the copy back, and the commit checks they all point at one again. Renaming the old
-- table instead would rewrite those references to follow it.
PRAGMA defer_foreign_keys = ON;

CREATE TABLE users_before_dpo AS SELECT * FROM users;
CREATE TABLE invitations_before_dpo AS SELECT * FROM invitations;
DROP TABLE invitations;
DROP TABLE users;

CREATE TABLE users (
	id TEXT PRIMARY KEY,
	webauthn_id BLOB NOT NULL UNIQUE,
	role TEXT NOT NULL CHECK (role IN ('requester', 'officer', 'staff', 'admin', 'dpo')),
	display_name TEXT NOT NULL,
	professional_id TEXT NOT NULL DEFAULT '',
	status TEXT NOT NULL CHECK (status IN ('active', 'suspended')),
	created_at TIMESTAMP NOT NULL,
	person_id TEXT NOT NULL DEFAULT ''
);
INSERT INTO users (id, webauthn_id, role, display_name, professional_id, status, created_at, person_id)
	SELECT id, webauthn_id, role, display_name, professional_id, status, created_at, person_id FROM users_before_dpo;
CREATE INDEX users_person ON users (person_id);
CREATE INDEX users_professional_id ON users (professional_id);

CREATE TABLE invitations (
	id TEXT PRIMARY KEY,
	token_hash TEXT NOT NULL UNIQUE,
	role TEXT NOT NULL CHECK (role IN ('requester', 'officer', 'staff', 'admin', 'dpo')),
	display_name TEXT NOT NULL,
	professional_id TEXT NOT NULL DEFAULT '',
	created_by TEXT NOT NULL,
	created_at TIMESTAMP NOT NULL,
	expires_at TIMESTAMP NOT NULL,
	used_at TIMESTAMP,
	user_id TEXT REFERENCES users (id),
	person_id TEXT NOT NULL DEFAULT ''
);
INSERT INTO invitations (id, token_hash, role, display_name, professional_id, created_by, created_at, expires_at, used_at, user_id, person_id)
	SELECT id, token_hash, role, display_name, professional_id, created_by, created_at, expires_at, used_at, user_id, person_id
	FROM invitations_before_dpo;

DROP TABLE users_before_dpo;
DROP TABLE invitations_before_dpo;
