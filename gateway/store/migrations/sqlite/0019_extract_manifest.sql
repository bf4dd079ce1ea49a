-- An extract's manifest is its decision's (approval_decisions.manifest: the completion copied it into the
-- extract, and neither copy changes afterwards): kept once, and out of the extracts row, which a claim and a
-- delivery each update. SQLite writes a whole row again on UPDATE, so the claim and the delivery of a 2,000-entry
-- extract each rewrote its manifest (354 KB in BenchmarkRetrieveExtract: WAL pages, then their fsync) while
-- holding the write lock (issue 15). Extract reads take the manifest from the decision (approvals' manifestColumn).
ALTER TABLE extracts DROP COLUMN manifest;
