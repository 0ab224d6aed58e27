-- 0007: the census: per integration and scope, how many items the tracker lists, how many rows
-- we hold for them, and what is missing. Written by the deletion sweep (every
-- C9_SYNC_SWEEP_EVERY_RUNS runs and on `sync --full`) and by `c9-sync integrations census`.
-- A sync that says "ok" while it holds 22 of 104 items is the worst bug this product can have:
-- this is where it would show (`c9-sync status`, `c9_sync_census_missing`, `census_mismatch`).
--
--  * upstream: ids the tracker listed for the scope; held: this integration's rows of the scope
--    that are present (not removed upstream, not out of scope); removed: its rows of the scope
--    marked removed upstream; missing: listed ids with no present row at all (never synced, or
--    rejected); lost: the reason when this credential can no longer read the scope (its rows
--    are then never marked deleted).
--  * One row per (integration, scope), replaced by each census; rows of scopes no longer
--    configured are dropped by the next census. Deleted with the integration.

CREATE TABLE integration_census (
    integration_id UUID NOT NULL REFERENCES integrations(id) ON DELETE CASCADE,
    scope TEXT NOT NULL,
    upstream INTEGER NOT NULL,
    held INTEGER NOT NULL,
    removed INTEGER NOT NULL,
    missing INTEGER NOT NULL,
    lost TEXT,
    checked_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (integration_id, scope),
    CONSTRAINT integration_census_counts_check
        CHECK (upstream >= 0 AND held >= 0 AND removed >= 0 AND missing >= 0)
);

COMMENT ON TABLE integration_census IS 'Per integration and scope: items upstream, rows held, removed, missing (last census)';
