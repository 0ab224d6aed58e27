-- 0002: what the sync worker needs beyond the seed.

-- The human key people type (ABC-123, org/repo#42, ENG-12). It changes when an item moves between
-- projects, so it is shown, never used as identity: identity stays (source, external_id).
ALTER TABLE work_items ADD COLUMN external_key VARCHAR(255);
-- Which integration last synced the row: the deletion sweep compares an integration's rows with
-- what is still upstream. SET NULL so removing an integration keeps the history it synced.
ALTER TABLE work_items ADD COLUMN integration_id UUID REFERENCES integrations(id) ON DELETE SET NULL;
-- The tracker's own "updated" time of the version stored: an older copy of an item (from an
-- overlap re-read or a lagging replica) never overwrites a newer one.
ALTER TABLE work_items ADD COLUMN source_updated_at TIMESTAMPTZ;
-- Set when the tracker deleted/trashed the item or the sweep no longer finds it; rows are marked,
-- never silently dropped. Cleared if the item comes back.
ALTER TABLE work_items ADD COLUMN removed_upstream_at TIMESTAMPTZ;

CREATE INDEX idx_work_items_integration_id ON work_items(integration_id);

COMMENT ON COLUMN work_items.external_key IS 'Human key shown by trackers (ABC-123, org/repo#42); not an identity';
COMMENT ON COLUMN work_items.integration_id IS 'Integration that last synced this item';
COMMENT ON COLUMN work_items.source_updated_at IS 'Upstream last-updated time of the stored version';
COMMENT ON COLUMN work_items.removed_upstream_at IS 'When the item was found deleted upstream (NULL while it exists)';

-- One row per integration: everything a run needs to resume, and what dashboards show as health.
-- Kept apart from `integrations` so the worker never writes the rows admins edit (and never
-- fires their NOTIFY trigger or bumps their updated_at on every run).
CREATE TABLE integration_sync_state (
    integration_id UUID PRIMARY KEY REFERENCES integrations(id) ON DELETE CASCADE,
    -- scope (repository, project, "" for one cursor) -> ISO-8601 upstream high-water mark
    cursor JSONB NOT NULL DEFAULT '{}'::jsonb,
    last_run_id UUID,
    last_started_at TIMESTAMPTZ,
    last_success_at TIMESTAMPTZ,
    last_error_at TIMESTAMPTZ,
    last_error_class VARCHAR(255),
    last_error TEXT,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ,
    last_duration_s DOUBLE PRECISION,
    runs_since_sweep INTEGER NOT NULL DEFAULT 0,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT integration_sync_state_cursor_object CHECK (jsonb_typeof(cursor) = 'object'),
    CONSTRAINT integration_sync_state_failures_check CHECK (consecutive_failures >= 0)
);

CREATE TRIGGER update_integration_sync_state_updated_at BEFORE UPDATE ON integration_sync_state
    FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();

COMMENT ON TABLE integration_sync_state IS 'Sync cursor, last result and backoff per integration (written by the worker)';
COMMENT ON COLUMN integration_sync_state.cursor IS 'scope -> upstream high-water mark (ISO-8601) committed with the last page';
COMMENT ON COLUMN integration_sync_state.next_attempt_at IS 'After a failure: no run before this time (exponential backoff)';
