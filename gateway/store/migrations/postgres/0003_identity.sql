-- People, their passkeys, invitations, WebAuthn ceremonies and sessions. No secret is stored in clear: invitation
-- and session tokens are kept as SHA-256 hashes.
CREATE TABLE users (
	id TEXT PRIMARY KEY,
	webauthn_id BYTEA NOT NULL UNIQUE,
	role TEXT NOT NULL CHECK (role IN ('requester', 'officer', 'staff', 'admin')),
	display_name TEXT NOT NULL,
	professional_id TEXT NOT NULL DEFAULT '',
	status TEXT NOT NULL CHECK (status IN ('active', 'suspended')),
	created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE invitations (
	id TEXT PRIMARY KEY,
	token_hash TEXT NOT NULL UNIQUE,
	role TEXT NOT NULL CHECK (role IN ('requester', 'officer', 'staff', 'admin')),
	display_name TEXT NOT NULL,
	professional_id TEXT NOT NULL DEFAULT '',
	created_by TEXT NOT NULL,
	created_at TIMESTAMPTZ NOT NULL,
	expires_at TIMESTAMPTZ NOT NULL,
	used_at TIMESTAMPTZ,
	user_id TEXT REFERENCES users (id)
);

CREATE TABLE credentials (
	id TEXT PRIMARY KEY,
	user_id TEXT NOT NULL REFERENCES users (id),
	data TEXT NOT NULL,
	sign_count BIGINT NOT NULL,
	attestation_format TEXT NOT NULL,
	created_at TIMESTAMPTZ NOT NULL,
	last_used_at TIMESTAMPTZ,
	revoked_at TIMESTAMPTZ
);
CREATE INDEX credentials_user ON credentials (user_id);

-- The library's SessionData between begin and finish, stored whole as JSON, deleted when consumed.
CREATE TABLE ceremonies (
	id TEXT PRIMARY KEY,
	kind TEXT NOT NULL,
	listener TEXT NOT NULL,
	user_id TEXT NOT NULL DEFAULT '',
	invitation_id TEXT NOT NULL DEFAULT '',
	session_data TEXT NOT NULL,
	created_at TIMESTAMPTZ NOT NULL,
	expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX ceremonies_expires ON ceremonies (expires_at);

CREATE TABLE sessions (
	id TEXT PRIMARY KEY,
	token_hash TEXT NOT NULL UNIQUE,
	user_id TEXT NOT NULL REFERENCES users (id),
	credential_id TEXT NOT NULL REFERENCES credentials (id),
	listener TEXT NOT NULL,
	created_at TIMESTAMPTZ NOT NULL,
	last_seen_at TIMESTAMPTZ NOT NULL,
	expires_at TIMESTAMPTZ NOT NULL,
	ended_at TIMESTAMPTZ
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_credential ON sessions (credential_id);
