-- Rate limits and throttles shared by every instance on this database (issue 12): sign-in and registration
-- calls per client address, and the console's refusal audit throttle. One row per key; a window starts at its
-- first hit and lasts window_ms. Each hit is one atomic upsert, so counts hold across instances.
CREATE TABLE rate_limits (
	key TEXT PRIMARY KEY,
	window_start_ms BIGINT NOT NULL,
	hits INTEGER NOT NULL,
	-- Hits that were not audited (the refusal throttle reports them in its next audit row).
	unaudited INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX rate_limits_window ON rate_limits (window_start_ms);
