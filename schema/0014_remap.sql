-- 0014: what `c9-sync remap` needs to map stored rows again, offline, after an admin edits an
-- integration's `status_map` (docs/operations.md#remap).
--
--  * `work_item_history.from_default` / `to_default` (and the same in `history_orphans`): the
--    connector's own mapping of `from_value`/`to_value` BEFORE the admin's status_map, where the
--    row shows it. A status name alone does not carry what that mapping read when the change was
--    read: Jira's status category and the resolution at that moment, Azure DevOps' state category
--    in the item's type, Linear's state type, GitHub's replayed open/closed state and labels. The
--    status_map only ever overrides by name, so with the default kept, a remap is
--    `status_map[name]` when the new map names it, else the default: no tracker call. Written
--    when the name was not overridden by the map in force at reading (then the stored status IS
--    the default); NULL when it was (the default was never seen): such a row keeps its status
--    unless the new map names it, and remap counts it.
--    Rows read before this migration: filled below with the same rule, taking the integration's
--    status_map as it stands now for the one in force when they were read (names compared
--    lower-cased and trimmed, as the connectors compare them case-folded).
--  * `integration_sync_state.mapping_context`: what a connector learnt online that mapping a
--    stored `external_data` needs besides the row and the config (Jira: the ids of the custom
--    fields the config names by name, and of Flagged; Azure DevOps: the category of each state of
--    each work item type). Saved after each run by connectors that learn such things; NULL until
--    a run has (remap then refuses that integration rather than map without it).
--  * `integration_sync_state.rows_mapped_with`: the status_map every stored row is mapped with,
--    so that the daemon notices an edited map and remaps after its next run.

ALTER TABLE work_item_history
    ADD COLUMN from_default VARCHAR(50),
    ADD COLUMN to_default VARCHAR(50),
    ADD CONSTRAINT work_item_history_default_check CHECK (
        from_default IN ('queued', 'in_progress', 'pr_ready', 'completed', 'blocked', 'cancelled')
        AND to_default IN ('queued', 'in_progress', 'pr_ready', 'completed', 'blocked', 'cancelled')
    );
COMMENT ON COLUMN work_item_history.to_default IS 'For status changes: to_value mapped by the connector alone, before status_map (NULL: unknown, status_map named it when read)';

ALTER TABLE history_orphans
    ADD COLUMN from_default VARCHAR(50),
    ADD COLUMN to_default VARCHAR(50);

-- (a name the integration's status_map names, keys as the admin wrote them: the default was
-- never seen; a map that is not an object names nothing)
UPDATE work_item_history h
SET from_default = CASE WHEN NOT (lower(btrim(h.from_value)) = ANY (m.names)) THEN h.from_status END,
    to_default = CASE WHEN NOT (lower(btrim(h.to_value)) = ANY (m.names)) THEN h.to_status END
FROM work_items w
JOIN integrations i ON i.id = w.integration_id
CROSS JOIN LATERAL (
    SELECT CASE WHEN jsonb_typeof(i.config -> 'status_map') = 'object'
                THEN ARRAY(SELECT lower(btrim(k)) FROM jsonb_object_keys(i.config -> 'status_map') k)
                ELSE '{}'::text[] END AS names
) m
WHERE h.work_item_id = w.id AND h.field = 'status';

ALTER TABLE integration_sync_state ADD COLUMN mapping_context JSONB;
COMMENT ON COLUMN integration_sync_state.mapping_context IS 'What the connector learnt online that mapping stored external_data offline needs (remap); NULL: no run has saved it';

-- The status_map (its digest) every stored row of the integration is mapped with: set by a
-- remap, and by the first run that finds none. A run whose config's map differs says so, and the
-- daemon remaps after it (a sync maps only what it reads; the rest would keep the old map).
ALTER TABLE integration_sync_state ADD COLUMN rows_mapped_with TEXT;
COMMENT ON COLUMN integration_sync_state.rows_mapped_with IS 'Digest of the status_map all stored rows are mapped with (remap); NULL: not known yet';
