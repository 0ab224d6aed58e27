-- 0013: how much history an integration has still to read, as its last run counted it (items
-- whose history is pending, and items changed after their feed's read-through time), so that
-- `c9-sync status` and /metrics show a backlog the per-run budget is working through. NULL: the
-- integration's tracker reads no history apart from its items, or no run has counted yet.
ALTER TABLE integration_sync_state ADD COLUMN history_backlog INTEGER;
COMMENT ON COLUMN integration_sync_state.history_backlog IS 'Items whose history is not read yet, as the last run counted (NULL: not counted)';
