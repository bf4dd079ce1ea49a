-- Identity vigilance (issue 10): the INS identity traits a requester gave with the identifier (birth name,
-- first given name, birth date, sex), as one sealed JSON value like the identifier. NULL when none was given.
ALTER TABLE approval_requests ADD COLUMN traits_sealed BYTEA;
