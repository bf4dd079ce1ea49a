-- A sign-in's ceremony is not stored while it waits for its answer: its state travels sealed in its id
-- (identity's signin_ceremony.go), so that beginning a sign-in, which anyone may do, writes nothing. A ceremony that
-- was answered, well or not, is remembered here until it expires, so that no ceremony is answered twice.
CREATE TABLE used_sign_ins (
	id TEXT PRIMARY KEY,
	expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX used_sign_ins_expires ON used_sign_ins (expires_at);
