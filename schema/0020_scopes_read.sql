-- 0020: a scope's first read is logged by the page, not by the item (issue #17: "activity_logs
-- that scale"; docs/dashboards.md, `work_items_imported`).
--
-- The first read of a repository, project or team stores its whole backlog: items that existed
-- upstream before the integration watched them. One `work_item_created` row each told a
-- dashboard that 10,000 items were created on the day of the import (a fifth of PostgreSQL's
-- work in such a run, measured: docs/operations.md), so a first read now writes one
-- `work_items_imported` row per page, with every item's id and status in it. Items that appear
-- in a scope already read keep their own `work_item_created` row.
--
-- "Already read" must survive a first read that a shutdown or the run deadline cut short (it
-- goes on from its cursor in the next run, still a first read) and a scope that was read to its
-- end and holds no item (it has no cursor, yet an item that appears there later is news): the
-- cursor cannot tell either, so the sync state keeps the scopes whose first read reached the
-- end of their listing. The worker adds the scopes a run read to their end, and drops those
-- that left the config (read again in full if they come back, as their cursor is dropped).
--
-- Existing integrations: every scope with a cursor counts as read (a first read in progress
-- while this migration runs finishes with one row per item, as before); a scope read to its
-- end without an item is read once more as a first read.

ALTER TABLE integration_sync_state ADD COLUMN scopes_read text[] NOT NULL DEFAULT '{}';

UPDATE integration_sync_state
SET scopes_read = ARRAY(SELECT jsonb_object_keys(cursor) ORDER BY 1)
WHERE cursor <> '{}'::jsonb;

COMMENT ON COLUMN integration_sync_state.scopes_read IS
    'Scopes whose first read reached the end of their listing: items new to these are logged one by one (work_item_created), the others by the page (work_items_imported)';
