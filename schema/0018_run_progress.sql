-- 0018: how far the run in progress has come, for `c9-sync status` on any machine (the daemon's
-- /metrics shows it too, but only for the runs of that process): a long first import is told
-- from a stall by its items so far and by how far behind now its committed cursor is.
-- Written by the run after a committed page, at most every few seconds (not in the page's
-- transaction: progress is a display, and a write a page would cost the import). It names its
-- run: `status` shows it only while that run is the last started one and still holds its lock.
ALTER TABLE integration_sync_state ADD COLUMN run_progress JSONB;
COMMENT ON COLUMN integration_sync_state.run_progress IS 'Progress of the last run: run_id, items, pages, scope, cursor_at, at (NULL before its first page)';
