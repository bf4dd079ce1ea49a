-- One person, one vote: accounts that are one person (the same professional id, linked by an admin) share a
-- person_id. Self-approval and the two-officer rule compare persons, not accounts. An existing account is its
-- own person. An invitation may name the person an admin linked it to ('' = a new person).
ALTER TABLE users ADD COLUMN person_id TEXT NOT NULL DEFAULT '';
UPDATE users SET person_id = id WHERE person_id = '';
CREATE INDEX users_person ON users (person_id);
CREATE INDEX users_professional_id ON users (professional_id);
ALTER TABLE invitations ADD COLUMN person_id TEXT NOT NULL DEFAULT '';
