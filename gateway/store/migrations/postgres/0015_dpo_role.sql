-- The data-protection officer (issue 10): a console role that prints patients' access histories and records
-- their restrictions. The role checks of users and invitations accept it.
ALTER TABLE users DROP CONSTRAINT users_role_check,
	ADD CONSTRAINT users_role_check CHECK (role IN ('requester', 'officer', 'staff', 'admin', 'dpo'));
ALTER TABLE invitations DROP CONSTRAINT invitations_role_check,
	ADD CONSTRAINT invitations_role_check CHECK (role IN ('requester', 'officer', 'staff', 'admin', 'dpo'));
