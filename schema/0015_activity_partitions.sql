-- 0015: activity_logs that scale (issue #17): monthly partitions, and what quiet runs need.
--
--  * Quiet runs. A run that changed nothing writes no sync_started/sync_completed pair any more
--    (worker/sync.py, docs/dashboards.md): integration_sync_state counts them (`quiet_runs`,
--    the first and last of their starts) and one `sync_completed` row an hour at most stands
--    for them. `run_logged_at` is when the integration's last run-end row was written.
--
--  * activity_logs becomes range-partitioned by month on created_at, as the seed foresaw. The
--    rows already there are not copied: the old table is renamed `activity_logs_before_0015`
--    and attached as ONE partition holding everything from the beginning of time to the end of
--    the month this migration runs in. Monthly partitions (activity_logs_YYYY_MM) follow it,
--    created ahead by `activity_logs_make_partitions()` (the worker calls it at start, once a
--    day, and `c9-sync migrate` after migrating), and `activity_logs_default` catches a row
--    whose month has no partition yet, so an insert never fails.
--
--    What it costs on a large table, under an exclusive lock of activity_logs for the whole
--    migration (writers wait, nothing fails): one sequential read of the old table (ATTACH
--    checks every row is inside the partition's range) and one index build, the new primary
--    key (id, created_at). Every other index is kept as it is and attached to the partitioned
--    index of the same definition; no row is rewritten, the foreign keys are not re-checked.
--    About the time of one `CREATE INDEX` on the table (tens of seconds per 10 million rows).
--
--    The primary key becomes (id, created_at): PostgreSQL enforces a unique constraint of a
--    partitioned table in each partition's own index, so it must contain the partition key.
--    What that changes: `id` alone is no longer declared unique across partitions (it still
--    comes from gen_random_uuid(), so it stays unique in practice); a lookup by id alone
--    probes each partition's index (add created_at when you know it); nothing references
--    activity_logs(id), so no foreign key had to change.
--
--  * The privileges the old table had (roles.sql: the worker appends, dashboards read) are
--    granted on the new parent; partitions need none (access goes through the parent). The one
--    view over activity_logs (v_recent_activity, 0004) followed the rename: it is replaced, as
--    it was, over the new table.
--
--  * Retention (`C9_SYNC_ACTIVITY_RETENTION_MONTHS`, `C9_SYNC_ACTIVITY_ITEM_RETENTION_MONTHS`,
--    both off by default) goes through `activity_logs_trim()`: run rows of old months are
--    deleted; item and agent events only when the second setting asks; a monthly partition
--    whose every row is past both limits is dropped whole instead. Both functions run as their
--    owner (SECURITY DEFINER), so the worker role needs no DDL and no DELETE on the table.

-- Quiet runs -------------------------------------------------------------------------------------
ALTER TABLE integration_sync_state
    ADD COLUMN quiet_runs INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN quiet_first_at TIMESTAMPTZ,
    ADD COLUMN quiet_last_at TIMESTAMPTZ,
    ADD COLUMN run_logged_at TIMESTAMPTZ,
    ADD CONSTRAINT integration_sync_state_quiet_runs_check CHECK (quiet_runs >= 0);

COMMENT ON COLUMN integration_sync_state.quiet_runs IS 'Runs that changed nothing since the last run row in activity_logs (they wrote none)';
COMMENT ON COLUMN integration_sync_state.quiet_first_at IS 'Start of the first of those quiet runs';
COMMENT ON COLUMN integration_sync_state.quiet_last_at IS 'Start of the last of those quiet runs';
COMMENT ON COLUMN integration_sync_state.run_logged_at IS 'When the last run row (sync_completed/failed/interrupted) was written';

-- The old table becomes one partition --------------------------------------------------------
ALTER TABLE activity_logs RENAME TO activity_logs_before_0015;
ALTER TABLE activity_logs_before_0015 DROP CONSTRAINT activity_logs_pkey;
ALTER INDEX idx_activity_logs_team_id RENAME TO activity_logs_before_0015_team_id_idx;
ALTER INDEX idx_activity_logs_agent_id RENAME TO activity_logs_before_0015_agent_id_idx;
ALTER INDEX idx_activity_logs_work_item_id RENAME TO activity_logs_before_0015_work_item_id_idx;
ALTER INDEX idx_activity_logs_event_type RENAME TO activity_logs_before_0015_event_type_idx;
ALTER INDEX idx_activity_logs_created_at RENAME TO activity_logs_before_0015_created_at_idx;
ALTER INDEX idx_activity_logs_team_metric_events
    RENAME TO activity_logs_before_0015_team_metric_events_idx;
ALTER INDEX idx_activity_logs_team_created RENAME TO activity_logs_before_0015_team_created_idx;
-- Its foreign keys stay (the parent's, the same, adopt them when it is attached, unchecked);
-- renamed so the parent's take their names.
ALTER TABLE activity_logs_before_0015 RENAME CONSTRAINT activity_logs_team_id_fkey
    TO activity_logs_before_0015_team_id_fkey;
ALTER TABLE activity_logs_before_0015 RENAME CONSTRAINT activity_logs_agent_id_fkey
    TO activity_logs_before_0015_agent_id_fkey;
ALTER TABLE activity_logs_before_0015 RENAME CONSTRAINT activity_logs_work_item_id_fkey
    TO activity_logs_before_0015_work_item_id_fkey;

CREATE TABLE activity_logs (
    id UUID NOT NULL DEFAULT gen_random_uuid(),
    team_id UUID REFERENCES teams(id) ON DELETE CASCADE,
    agent_id UUID REFERENCES agents(id) ON DELETE CASCADE,
    work_item_id UUID REFERENCES work_items(id) ON DELETE SET NULL,
    event_type VARCHAR(100) NOT NULL,
    message TEXT NOT NULL,
    metadata JSONB,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT activity_logs_pkey PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);

CREATE INDEX idx_activity_logs_team_id ON activity_logs(team_id);
CREATE INDEX idx_activity_logs_agent_id ON activity_logs(agent_id);
CREATE INDEX idx_activity_logs_work_item_id ON activity_logs(work_item_id);
CREATE INDEX idx_activity_logs_event_type ON activity_logs(event_type);
CREATE INDEX idx_activity_logs_created_at ON activity_logs(created_at DESC);
CREATE INDEX idx_activity_logs_team_metric_events ON activity_logs (team_id, created_at)
    INCLUDE (event_type)
    WHERE event_type IN ('commit_created', 'conflict_detected');
CREATE INDEX idx_activity_logs_team_created ON activity_logs (team_id, created_at DESC);

COMMENT ON TABLE activity_logs IS 'Audit trail of all team/agent/work item activities (partitioned by month of created_at)';
COMMENT ON COLUMN activity_logs.event_type IS 'e.g., agent_started, commit_created, conflict_detected, work_completed';

DO $$
DECLARE
    next_month timestamptz := date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
                              + interval '1 month';
    acl record;
BEGIN
    EXECUTE format(
        'ALTER TABLE activity_logs ATTACH PARTITION activity_logs_before_0015'
        ' FOR VALUES FROM (MINVALUE) TO (%L)', next_month);
    FOR acl IN
        SELECT a.privilege_type,
               CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END AS grantee
        FROM pg_class c
        CROSS JOIN LATERAL aclexplode(c.relacl) AS a
        LEFT JOIN pg_roles r ON r.oid = a.grantee
        WHERE c.oid = 'activity_logs_before_0015'::regclass AND a.grantee <> c.relowner
    LOOP
        EXECUTE format('GRANT %s ON activity_logs TO %s', acl.privilege_type, acl.grantee);
    END LOOP;
END
$$;

CREATE TABLE activity_logs_default PARTITION OF activity_logs DEFAULT;

COMMENT ON TABLE activity_logs_before_0015 IS 'activity_logs rows up to the month migration 0015 ran in';
COMMENT ON TABLE activity_logs_default IS 'activity_logs rows of a month with no partition yet (moved out when it is made)';

-- The view over it, as 0004 made it, now over the partitioned table ---------------------------
CREATE OR REPLACE VIEW v_recent_activity AS
SELECT
    a.id,
    a.created_at,
    a.team_id,
    t.name AS team_name,
    a.agent_id,
    g.name AS agent_name,
    a.event_type,
    a.message,
    a.metadata,
    a.work_item_id,
    w.source,
    w.external_id,
    w.external_key,
    w.title,
    w.status AS item_status,
    w.external_url
FROM activity_logs a
LEFT JOIN teams t ON t.id = a.team_id
LEFT JOIN agents g ON g.id = a.agent_id
LEFT JOIN work_items w ON w.id = a.work_item_id
ORDER BY a.created_at DESC, a.id DESC;

-- Partitions ahead ---------------------------------------------------------------------------
-- This month and the next `months_ahead` ones (UTC months), each made once. A month already
-- covered (by activity_logs_before_0015) is skipped; rows the default partition caught for a
-- month are moved into its new partition. Returns the partitions made.
CREATE FUNCTION activity_logs_make_partitions(months_ahead integer)
RETURNS SETOF text
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public, pg_temp
SET TimeZone = 'UTC'
AS $$
DECLARE
    first_day timestamptz;
    part text;
BEGIN
    FOR i IN 0..GREATEST(months_ahead, 0) LOOP
        first_day := date_trunc('month', now()) + make_interval(months => i);
        part := 'activity_logs_' || to_char(first_day, 'YYYY_MM');
        CONTINUE WHEN to_regclass(part) IS NOT NULL;
        CONTINUE WHEN EXISTS (  -- inside the range of the partition of the rows before 0015
            SELECT 1 FROM pg_inherits inh JOIN pg_class c ON c.oid = inh.inhrelid
            WHERE inh.inhparent = 'activity_logs'::regclass
              AND c.relname = 'activity_logs_before_0015'
              AND first_day < (regexp_match(pg_get_expr(c.relpartbound, c.oid),
                                            'TO \(''([^'']+)''\)'))[1]::timestamptz
        );
        IF EXISTS (SELECT 1 FROM activity_logs_default
                   WHERE created_at >= first_day
                     AND created_at < first_day + interval '1 month') THEN
            -- The default partition holds rows of that month: move them into the new table,
            -- then attach it (ATTACH checks the default no longer holds any).
            EXECUTE format('CREATE TABLE %I (LIKE activity_logs INCLUDING DEFAULTS)', part);
            EXECUTE format(
                'WITH moved AS (DELETE FROM activity_logs_default'
                '  WHERE created_at >= %1$L AND created_at < %2$L RETURNING *)'
                ' INSERT INTO %3$I SELECT * FROM moved',
                first_day, first_day + interval '1 month', part);
            EXECUTE format(
                'ALTER TABLE activity_logs ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                part, first_day, first_day + interval '1 month');
        ELSE
            EXECUTE format(
                'CREATE TABLE %I PARTITION OF activity_logs FOR VALUES FROM (%L) TO (%L)',
                part, first_day, first_day + interval '1 month');
        END IF;
        RETURN NEXT part;
    END LOOP;
END
$$;

COMMENT ON FUNCTION activity_logs_make_partitions(integer) IS 'Creates the activity_logs partitions of this month and the next N (UTC); returns those made';

-- Retention ----------------------------------------------------------------------------------
-- Months count back from this month's first day (UTC): rows created before the first day of
-- the month `run_months` months ago whose event is one of `run_events` are deleted; with
-- `item_months`, every other row (item and agent events) before its own limit. NULL: kept.
-- A monthly partition wholly before both limits is dropped whole instead of deleted row by
-- row. Returns ('deleted', rows) and ('dropped', partitions).
CREATE FUNCTION activity_logs_trim(run_months integer, run_events text[], item_months integer)
RETURNS TABLE (what text, n bigint)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public, pg_temp
SET TimeZone = 'UTC'
AS $$
DECLARE
    run_before timestamptz := date_trunc('month', now()) - make_interval(months => run_months);
    item_before timestamptz := date_trunc('month', now()) - make_interval(months => item_months);
    part record;
    dropped bigint := 0;
    deleted bigint := 0;
    n_rows bigint;
BEGIN
    IF run_before IS NOT NULL AND item_before IS NOT NULL THEN
        FOR part IN
            SELECT c.relname,
                   (regexp_match(pg_get_expr(c.relpartbound, c.oid),
                                 'TO \(''([^'']+)''\)'))[1]::timestamptz AS upper_bound
            FROM pg_inherits inh JOIN pg_class c ON c.oid = inh.inhrelid
            WHERE inh.inhparent = 'activity_logs'::regclass
              AND c.relname ~ '^activity_logs_[0-9]{4}_[0-9]{2}$'
        LOOP
            IF part.upper_bound <= LEAST(run_before, item_before) THEN
                EXECUTE format('DROP TABLE %I', part.relname);
                dropped := dropped + 1;
            END IF;
        END LOOP;
    END IF;
    IF run_before IS NOT NULL THEN
        DELETE FROM activity_logs WHERE created_at < run_before AND event_type = ANY(run_events);
        GET DIAGNOSTICS n_rows = ROW_COUNT;
        deleted := deleted + n_rows;
    END IF;
    IF item_before IS NOT NULL THEN
        DELETE FROM activity_logs
        WHERE created_at < item_before AND NOT event_type = ANY(run_events);
        GET DIAGNOSTICS n_rows = ROW_COUNT;
        deleted := deleted + n_rows;
    END IF;
    RETURN QUERY VALUES ('deleted', deleted), ('dropped', dropped);
END
$$;

COMMENT ON FUNCTION activity_logs_trim(integer, text[], integer) IS 'Retention of activity_logs: run rows (and item events, when asked) of months past the limits';

-- SECURITY DEFINER: nobody but the worker (and the owner) may call them.
REVOKE ALL ON FUNCTION activity_logs_make_partitions(integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION activity_logs_trim(integer, text[], integer) FROM PUBLIC;
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'c9_sync_worker') THEN
        GRANT EXECUTE ON FUNCTION activity_logs_make_partitions(integer) TO c9_sync_worker;
        GRANT EXECUTE ON FUNCTION activity_logs_trim(integer, text[], integer) TO c9_sync_worker;
    END IF;
END
$$;

SELECT activity_logs_make_partitions(3);
