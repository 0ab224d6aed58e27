-- 0011: the trackers' own history of each item, and start/completion times derived from it.
--
-- The seed has no history: `started_at` was the moment a sync first saw an item in progress and
-- `activity_logs` only the status changes a sync happened to observe, at the sync's time. So cycle
-- time (and `metrics.avg_completion_time_hours`) was wrong or NULL for most items.
--
--  * `work_item_history`: one row per change of a tracked field as the tracker recorded it, with
--    the tracker's own time and actor (a display name or login and the tracker's account id, never
--    an e-mail address). Idempotent on the tracker's own change id and the field (a re-read is a
--    no-op). The value at creation is a row whose `from_value` is NULL. Rows go only with their
--    item (ON DELETE CASCADE); a sync never deletes them. For `status`, `from_value`/`to_value`
--    are the tracker's names and `from_status`/`to_status` their mapping at the time of reading
--    (`c9-sync remap` maps them again after a `status_map` edit).
--  * `work_items.time_basis`: where `started_at`/`completed_at` come from: `history` (the first
--    move into in_progress or later / the last move into completed, from the rows above), `tracker`
--    (the tracker's own start and completion fields), `observed` (the first sync that saw the item
--    started or completed: the fallback, only where no history is read).
--  * Views for dashboards, tracker-neutral (docs/dashboards.md): v_status_changes, v_time_in_status,
--    v_cycle_time, v_cumulative_flow. Items removed upstream are left out of the last three.

CREATE TABLE work_item_history (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    work_item_id UUID NOT NULL REFERENCES work_items(id) ON DELETE CASCADE,
    change_id TEXT NOT NULL,
    field TEXT NOT NULL,
    changed_at TIMESTAMPTZ NOT NULL,
    from_value TEXT,
    to_value TEXT,
    from_status VARCHAR(50),
    to_status VARCHAR(50),
    actor_name TEXT,
    actor_id TEXT,
    recorded_at TIMESTAMPTZ NOT NULL DEFAULT now(),

    CONSTRAINT work_item_history_change_unique UNIQUE (work_item_id, change_id, field),
    CONSTRAINT work_item_history_field_check
        CHECK (field IN ('status', 'assignee', 'parent', 'sprint', 'priority', 'story_points')),
    CONSTRAINT work_item_history_status_check CHECK (
        from_status IN ('queued', 'in_progress', 'pr_ready', 'completed', 'blocked', 'cancelled')
        AND to_status IN ('queued', 'in_progress', 'pr_ready', 'completed', 'blocked', 'cancelled')
    )
);

-- the derivation and the views read one item's changes of one field in time order
CREATE INDEX work_item_history_item_field_time
    ON work_item_history (work_item_id, field, changed_at, id);

COMMENT ON TABLE work_item_history IS 'Changes of tracked fields as each tracker recorded them (its own time and actor)';
COMMENT ON COLUMN work_item_history.change_id IS 'The tracker''s own id of the change (Jira history id, ADO revision, GitHub event id, Linear IssueHistory id)';
COMMENT ON COLUMN work_item_history.from_value IS 'Value before the change in the tracker''s words; NULL on the row for the item''s creation';
COMMENT ON COLUMN work_item_history.to_status IS 'For status changes: to_value mapped onto work_items.status';

ALTER TABLE work_items ADD COLUMN time_basis VARCHAR(20);
ALTER TABLE work_items ADD CONSTRAINT work_items_time_basis_check
    CHECK (time_basis IN ('history', 'tracker', 'observed'));
COMMENT ON COLUMN work_items.time_basis IS 'Source of started_at/completed_at: history (tracker''s recorded changes), tracker (its own fields), observed (first sync that saw it)';

-- Every status change, tracker-neutral.
CREATE VIEW v_status_changes AS
SELECT h.work_item_id, w.team_id, w.integration_id, w.source, w.external_key, w.title,
       h.changed_at, h.from_value AS from_name, h.to_value AS to_name, h.from_status,
       h.to_status, h.actor_name, h.actor_id, h.from_value IS NULL AS at_creation
FROM work_item_history h
JOIN work_items w ON w.id = h.work_item_id
WHERE h.field = 'status';

COMMENT ON VIEW v_status_changes IS 'Status changes of every item as its tracker recorded them (at_creation: the status it was created in)';

-- Per item and status: how long it spent there, summed over every visit; the visit under way
-- counts until now (`current`).
CREATE VIEW v_time_in_status AS
WITH visits AS (
    SELECT h.work_item_id, h.to_status AS status, h.changed_at AS entered_at,
           lead(h.changed_at) OVER (PARTITION BY h.work_item_id ORDER BY h.changed_at, h.id)
               AS left_at
    FROM work_item_history h
    WHERE h.field = 'status' AND h.to_status IS NOT NULL
)
SELECT v.work_item_id, w.team_id, w.source, w.external_key, v.status,
       count(*)::int AS visits,
       round(sum(extract(epoch FROM COALESCE(v.left_at, now()) - v.entered_at)) / 3600, 2)
           AS hours,
       bool_or(v.left_at IS NULL) AS current
FROM visits v
JOIN work_items w ON w.id = v.work_item_id
WHERE w.removed_upstream_at IS NULL
GROUP BY v.work_item_id, w.team_id, w.source, w.external_key, v.status;

COMMENT ON VIEW v_time_in_status IS 'Hours each item spent in each status (all visits summed; current: it is there now)';

-- Per completed item: lead time (created → completed, from history) and cycle time
-- (started → completed), with the basis of those times.
CREATE VIEW v_cycle_time AS
SELECT w.id AS work_item_id, w.team_id, w.integration_id, w.source, w.external_key, w.title,
       c.created_upstream_at, w.started_at, w.completed_at, w.time_basis,
       round(extract(epoch FROM w.completed_at - c.created_upstream_at) / 3600, 2)
           AS lead_time_hours,
       CASE WHEN w.started_at <= w.completed_at
            THEN round(extract(epoch FROM w.completed_at - w.started_at) / 3600, 2)
       END AS cycle_time_hours
FROM work_items w
LEFT JOIN LATERAL (
    SELECT min(h.changed_at) AS created_upstream_at
    FROM work_item_history h
    WHERE h.work_item_id = w.id AND h.field = 'status' AND h.from_value IS NULL
) c ON true
WHERE w.status = 'completed' AND w.completed_at IS NOT NULL AND w.removed_upstream_at IS NULL;

COMMENT ON VIEW v_cycle_time IS 'Lead and cycle time per completed item (hours); created_upstream_at from history';

-- Per team and (UTC) day of the last 180: how many items were in each status at the day's end,
-- from history (an item counts from the day it was created upstream).
CREATE VIEW v_cumulative_flow AS
SELECT w.team_id, d.day::date AS day, s.status, count(*)::int AS items
FROM work_items w
CROSS JOIN LATERAL (
    SELECT min(h.changed_at) AS first_at
    FROM work_item_history h
    WHERE h.work_item_id = w.id AND h.field = 'status'
) f
CROSS JOIN LATERAL generate_series(
    greatest((f.first_at AT TIME ZONE 'UTC')::date, (now() AT TIME ZONE 'UTC')::date - 179),
    (now() AT TIME ZONE 'UTC')::date, interval '1 day') AS d(day)
CROSS JOIN LATERAL (
    SELECT h.to_status AS status
    FROM work_item_history h
    WHERE h.work_item_id = w.id AND h.field = 'status' AND h.to_status IS NOT NULL
      AND h.changed_at < (d.day + interval '1 day') AT TIME ZONE 'UTC'
    ORDER BY h.changed_at DESC, h.id DESC
    LIMIT 1
) s
WHERE w.removed_upstream_at IS NULL AND f.first_at IS NOT NULL
GROUP BY w.team_id, d.day, s.status;

COMMENT ON VIEW v_cumulative_flow IS 'Items per team, UTC day (last 180 days) and status at the day''s end, from history';

-- Reading history costs requests, so it is budgeted per run and resumable:
--  * `work_items.history_pending`: the item's history did not come whole with it (a changelog cut
--    at the search's limit); read by id in a later history phase, within the budget.
--  * `integration_sync_state.history_cursor`: feed scope -> the token its history feed resumes
--    from (a continuation token, an event id); `history_through`: feed scope -> the upstream time
--    up to which its history is read. Items changed after it are the feed's backlog.
--  * `history_orphans`: changes a feed returned for an item not synced yet (created upstream
--    after the item listing); moved into work_item_history when the item arrives.
ALTER TABLE work_items ADD COLUMN history_pending BOOLEAN NOT NULL DEFAULT false;
COMMENT ON COLUMN work_items.history_pending IS 'The item''s history is not read whole yet (read by id within the history budget)';
CREATE INDEX work_items_history_pending ON work_items (integration_id, source_updated_at)
    WHERE history_pending;

ALTER TABLE integration_sync_state
    ADD COLUMN history_cursor JSONB NOT NULL DEFAULT '{}'::jsonb,
    ADD COLUMN history_through JSONB NOT NULL DEFAULT '{}'::jsonb;
COMMENT ON COLUMN integration_sync_state.history_cursor IS 'Feed scope -> token its history feed resumes from';
COMMENT ON COLUMN integration_sync_state.history_through IS 'Feed scope -> upstream time up to which its history is read';

CREATE TABLE history_orphans (
    integration_id UUID NOT NULL REFERENCES integrations(id) ON DELETE CASCADE,
    source VARCHAR(50) NOT NULL,
    external_id VARCHAR(255) NOT NULL,
    change_id TEXT NOT NULL,
    field TEXT NOT NULL,
    changed_at TIMESTAMPTZ NOT NULL,
    from_value TEXT,
    to_value TEXT,
    from_status VARCHAR(50),
    to_status VARCHAR(50),
    actor_name TEXT,
    actor_id TEXT,
    recorded_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (source, external_id, change_id, field)
);
COMMENT ON TABLE history_orphans IS 'History read before its item was synced; moved to work_item_history when the item arrives';
