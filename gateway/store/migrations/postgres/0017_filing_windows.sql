-- The daily filing limit as one row per requester (issue 15): the times of their filings in the last 24 hours.
-- A filing moves its requester's row on condition of the limit (INSERT … ON CONFLICT DO UPDATE … WHERE), in the
-- one statement that also inserts the request, its alert and its audit row: the upsert's condition reads the
-- row's latest committed version under its lock, so two filings at once cannot both pass the limit, without
-- the advisory lock statement that preceded the count over approval_requests. Filled from the filings of the
-- last 24 hours, so that the limit holds across the upgrade.
CREATE TABLE filing_windows (
	requester_id TEXT PRIMARY KEY,
	filed_at TIMESTAMPTZ[] NOT NULL
);
INSERT INTO filing_windows (requester_id, filed_at)
	SELECT requester_id, array_agg(filed_at ORDER BY filed_at) FROM approval_requests
	WHERE filed_at > now() - interval '24 hours' GROUP BY requester_id;
