-- PostgreSQL keeps the daily filing limit in a row per requester (filing_windows; see its migration), so that
-- concurrent filings need no lock statement. SQLite needs none: a filing's immediate transaction holds the
-- database's single write lock, and its count over approval_requests sees every filing committed before. So
-- nothing changes here; the version exists so that both dialects hold the same ones.
SELECT 1;
