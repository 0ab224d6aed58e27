-- 0009: OAuth grants with rotating refresh tokens (issue 14), one row per integration.
--
--  * Rotating refresh tokens cannot live in integrations.config: each refresh kills the previous
--    one, so the current one must be written back after every refresh and survive restarts and
--    replicas. It lives here, written only by the worker.
--  * access_token and refresh_token are Fernet tokens (AES-128-CBC + HMAC-SHA256), encrypted by the
--    worker with the first key of C9_SYNC_SECRET_KEYS before they reach the database: a dump or a
--    backup of this table holds no usable secret. access_expires_at stays readable (it is no
--    secret, and `status` shows it).
--  * A refresh happens under this row's lock (SELECT … FOR UPDATE): one replica refreshes, the
--    others wait and then find the fresh token. An empty row (both tokens NULL) exists only inside
--    that transaction, when the very first refresh starts from the seed in the config.
--  * Readable and writable by the worker role only, never by c9_dashboard (deploy/postgres/roles.sql
--    and the statement below). Deleted with the integration.

CREATE TABLE oauth_grants (
    integration_id UUID PRIMARY KEY REFERENCES integrations(id) ON DELETE CASCADE,
    access_token BYTEA,
    access_expires_at TIMESTAMPTZ,
    refresh_token BYTEA,
    refreshes BIGINT NOT NULL DEFAULT 0,
    refreshed_at TIMESTAMPTZ,
    granted_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT oauth_grants_access_check
        CHECK ((access_token IS NULL) = (access_expires_at IS NULL))
);

COMMENT ON TABLE oauth_grants IS 'OAuth grants (encrypted access and rotating refresh tokens), worker role only';

-- roles.sql gives c9_dashboard SELECT on every table created later (default privileges): take it
-- back at once, before any grant is stored, and let the worker in.
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'c9_dashboard') THEN
        REVOKE ALL ON oauth_grants FROM c9_dashboard;
    END IF;
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'c9_sync_worker') THEN
        GRANT SELECT, INSERT, UPDATE ON oauth_grants TO c9_sync_worker;
    END IF;
END
$$;
