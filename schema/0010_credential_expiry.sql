-- 0010: credential health. What each integration's connector learned of its credential's expiry
-- (a GitHub PAT's expiration header, a certificate's notAfter, a minted installation, Entra or
-- OAuth access token's expires_at), and how its last run checked the tracker's TLS certificate.
-- Written by the worker at the end of every run, failed runs included (a 401 after an expiry is
-- exactly when it matters); read by `c9-sync status`, the gauge
-- `c9_sync_credential_expiry_timestamp_seconds` and dashboards.
--
-- Not secret: no token, key or grant is stored here, only a kind and dates. c9_dashboard may
-- read both tables (the default privileges of deploy/postgres/roles.sql grant it SELECT).
--
--  * One row per (integration, kind). A run that reports a different expires_at for a kind (a
--    renewed or replaced credential) replaces the row and re-arms its warnings; a succeeded run
--    drops the kinds it no longer reported (the admin switched to another credential).
--  * renewable: the worker renews it on its own (minted tokens): gauge only, never a warning.
--  * warned_days: which warnings were already written for this expires_at, so that each is
--    written once across runs and replicas: 14, 7 and 1 (days ahead: `credential_expiring`) and
--    0 (past: `credential_expired`). Claimed under the row's lock with the activity row.
--  * Deleted with the integration.

CREATE TABLE integration_credentials (
    integration_id UUID NOT NULL REFERENCES integrations(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    renewable BOOLEAN NOT NULL DEFAULT false,
    observed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    warned_days SMALLINT[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (integration_id, kind),
    CONSTRAINT integration_credentials_kind_check CHECK (kind ~ '^[a-z][a-z0-9_]{0,63}$')
);

COMMENT ON TABLE integration_credentials IS 'Per integration and credential kind: when it expires, as the last run learned (no secret)';
COMMENT ON COLUMN integration_credentials.warned_days IS 'Warnings already written for this expires_at: 14, 7, 1 (days ahead), 0 (expired)';

-- How the last run verified the tracker's TLS certificate: the system's trust store, the
-- config's ca_bundle (a corporate CA), or not at all (an explicit verify_tls: false, which the
-- worker also logs at every run as `tls_unverified`). The config itself is not readable by
-- dashboards: this says what it chose, and nothing else of it.
CREATE TABLE integration_tls (
    integration_id UUID PRIMARY KEY REFERENCES integrations(id) ON DELETE CASCADE,
    verification TEXT NOT NULL,
    observed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT integration_tls_verification_check
        CHECK (verification IN ('system', 'custom_ca', 'unverified'))
);

COMMENT ON TABLE integration_tls IS 'Per integration: how its last run verified the tracker''s TLS certificate';
