-- Database roles for claude-nine-sync. Safe to run again (it converges: privileges granted by hand
-- to these roles are taken back), and meant to be run again after every `c9-sync migrate`.
--
-- Run it as the role that owns the schema and runs `c9-sync migrate` (the default privileges
-- below apply to tables that role creates later), in the application's database:
--
--     psql "$OWNER_DATABASE_URL" -v ON_ERROR_STOP=1 -f deploy/postgres/roles.sql
--
-- It creates two group roles (NOLOGIN). Give people and services their own login roles in them:
--
--     CREATE ROLE c9_sync LOGIN PASSWORD '…' IN ROLE c9_sync_worker;    -- the daemon
--     CREATE ROLE grafana LOGIN PASSWORD '…' IN ROLE c9_dashboard;      -- dashboards
--
-- c9_sync_worker: exactly what `c9-sync run` / `c9-sync sync` do, nothing more. It reads
--   integrations (config included: it needs the tokens), writes only integrations.last_sync,
--   upserts work_items (never deletes: items gone upstream are marked), appends activity_logs
--   and work_item_history (the trackers' recorded changes; they go only with their item; `remap`
--   maps their statuses again, nothing else of them),
--   keeps integration_sync_state, the census, credential expiries and TLS modes (no secret in
--   them) and the derived metrics rows, and reads schema_migrations to
--   refuse an old schema. It cannot change teams, agents or the integrations admins configure,
--   and cannot create, alter or drop anything (but activity_logs' monthly partitions and the
--   retention operators set, through the two functions of schema 0015 that do only that): run
--   the worker with C9_SYNC_AUTO_MIGRATE=false and migrate as the owner first.
-- c9_dashboard: reads every table and view, except integrations.config (tokens may live there)
--   and oauth_grants (encrypted OAuth tokens, never readable by it):
--   on integrations it may select every other column; views never expose config. It writes
--   nothing. Tables and views created later by the owner are readable by it at once (default
--   privileges); a new column of integrations is not, until it is added to the list below.
--   `c9-sync status` and `c9-sync integrations list` work with this role.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'c9_sync_worker') THEN
        CREATE ROLE c9_sync_worker NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'c9_dashboard') THEN
        CREATE ROLE c9_dashboard NOLOGIN;
    END IF;
END
$$;

COMMENT ON ROLE c9_sync_worker IS 'claude-nine-sync worker: syncs trackers into work_items (no DDL)';
COMMENT ON ROLE c9_dashboard IS 'claude-nine-sync dashboards: read-only, never integrations.config';

-- PostgreSQL 14 and older let every role create objects in schema public (15 revoked it):
-- a read-only role must not be able to plant tables or functions there.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

-- Start from nothing, so the grants below are the whole truth (converges after hand edits).
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM c9_sync_worker, c9_dashboard;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM c9_sync_worker, c9_dashboard;
DO $$
DECLARE
    col text;
BEGIN
    -- Column privileges survive a table-level REVOKE ALL: take them back one by one.
    FOR col IN
        SELECT attname FROM pg_attribute
        WHERE attrelid = 'public.integrations'::regclass AND attnum > 0 AND NOT attisdropped
    LOOP
        EXECUTE format('REVOKE ALL (%I) ON public.integrations FROM c9_sync_worker, c9_dashboard',
                       col);
    END LOOP;
END
$$;

GRANT USAGE ON SCHEMA public TO c9_sync_worker, c9_dashboard;

-- The worker ---------------------------------------------------------------------------------
GRANT SELECT ON public.schema_migrations TO c9_sync_worker;           -- refuse an old schema
GRANT SELECT ON public.teams TO c9_sync_worker;                       -- team names, metrics days
GRANT SELECT ON public.integrations TO c9_sync_worker;                -- incl. config (tokens)
GRANT UPDATE (last_sync) ON public.integrations TO c9_sync_worker;    -- and nothing else there
GRANT SELECT, INSERT, UPDATE ON public.integration_sync_state TO c9_sync_worker;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.integration_census TO c9_sync_worker;  -- replaced
GRANT SELECT, INSERT, UPDATE, DELETE ON public.integration_credentials TO c9_sync_worker;  -- expiries
GRANT SELECT, INSERT, UPDATE ON public.integration_tls TO c9_sync_worker;  -- TLS mode per run
GRANT SELECT, INSERT, UPDATE ON public.work_items TO c9_sync_worker;  -- marks, never deletes
GRANT SELECT, INSERT ON public.activity_logs TO c9_sync_worker;       -- append-only
-- activity_logs' monthly partitions ahead, and the retention operators set (schema 0015): the
-- two functions run as the owner, so the worker needs no DDL and no DELETE for them.
GRANT EXECUTE ON FUNCTION public.activity_logs_make_partitions(integer) TO c9_sync_worker;
GRANT EXECUTE ON FUNCTION public.activity_logs_trim(integer, text[], integer) TO c9_sync_worker;
GRANT SELECT, INSERT ON public.work_item_history TO c9_sync_worker;   -- the trackers' own facts
-- `c9-sync remap` maps them again after a status_map edit: our statuses only, never the facts
GRANT UPDATE (from_status, to_status) ON public.work_item_history TO c9_sync_worker;
GRANT USAGE ON SEQUENCE public.work_item_history_id_seq TO c9_sync_worker;
GRANT SELECT, INSERT, DELETE ON public.history_orphans TO c9_sync_worker;  -- until the item comes
GRANT UPDATE (from_status, to_status) ON public.history_orphans TO c9_sync_worker;
GRANT SELECT, INSERT, UPDATE ON public.sprints TO c9_sync_worker;
GRANT SELECT, INSERT, UPDATE ON public.work_item_sprints TO c9_sync_worker;  -- ended, not deleted
GRANT SELECT, INSERT, UPDATE, DELETE ON public.metrics TO c9_sync_worker;  -- derived rows
GRANT SELECT, INSERT, UPDATE ON public.oauth_grants TO c9_sync_worker;  -- encrypted OAuth grants
GRANT SELECT, INSERT, DELETE ON public.webhook_deliveries TO c9_sync_worker;  -- ids, kept a day

-- Dashboards ---------------------------------------------------------------------------------
GRANT SELECT ON ALL TABLES IN SCHEMA public TO c9_dashboard;          -- tables and views
REVOKE SELECT ON public.integrations FROM c9_dashboard;
REVOKE SELECT ON public.oauth_grants FROM c9_dashboard;               -- tokens, even encrypted
GRANT SELECT (id, team_id, type, name, is_active, last_sync, sync_interval, created_at, updated_at)
    ON public.integrations TO c9_dashboard;                           -- every column but config
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO c9_dashboard;

-- The optional work-tracking set (`c9-sync migrate --with work-tracking`): readable too.
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_namespace WHERE nspname = 'claude') THEN
        REVOKE ALL ON ALL TABLES IN SCHEMA claude FROM c9_sync_worker, c9_dashboard;
        GRANT USAGE ON SCHEMA claude TO c9_dashboard;
        GRANT SELECT ON ALL TABLES IN SCHEMA claude TO c9_dashboard;
        ALTER DEFAULT PRIVILEGES IN SCHEMA claude GRANT SELECT ON TABLES TO c9_dashboard;
    END IF;
END
$$;
