-- An extract's manifest is its decision's (approval_decisions.manifest, which the extract was a copy of: the
-- completion copied it, and neither row's manifest changes afterwards): kept once, and out of the extracts row,
-- which a claim and a delivery each update. SQLite writes a whole row again on UPDATE, so a claim and a delivery
-- of a 2,000-entry extract each rewrote its 400 KB manifest (WAL pages, then their fsync) while holding the write
-- lock (issue 15). Extract reads take the manifest from the decision (approvals' manifestColumn).
ALTER TABLE extracts DROP COLUMN manifest;
