-- 0004: the dashboard read model: what `metrics` rows need (indexes, sane values) and the views a
-- dashboard reads without knowing any tracker. Every view and column is documented in
-- docs/dashboards.md.
--
--  * Indexes for the daily rollup (worker/metrics.py). A day's numbers are range scans on
--    (team_id, time) so recomputing one day, or a year for fifty teams, reads only the rows it
--    counts. Both are partial: the completion index holds only completed, not-removed items (the
--    ones counted), and carries started_at so the mean duration is an index-only scan; the
--    activity index holds only the two event types agents write and metrics count
--    (commit_created, conflict_detected), so the sync's own high-volume rows do not grow it.
--  * `metrics` counts are never NULL or negative, and the mean duration is never negative. The
--    checks are NOT VALID so a database with odd legacy rows still migrates: they bind every new
--    or recomputed row (metrics rows are derived data: `c9-sync metrics rollup` rewrites them).
--  * The seed's two views ignored `removed_upstream_at` (added by 0002): an item deleted in its
--    tracker stayed in the agents' work queue and in the team's queued/in-progress counts. Both
--    now leave removed items out; `v_team_work_queue` also shows `external_key` (the key people
--    type), appended so the view's existing columns keep their positions.
--  * New views: v_team_status_counts, v_integration_health, v_recent_activity, v_team_metrics.
--    No view exposes `integrations.config`: it may hold tokens.

-- Rollup indexes ---------------------------------------------------------------------------------
CREATE INDEX idx_work_items_team_completed ON work_items (team_id, completed_at)
    INCLUDE (started_at)
    WHERE completed_at IS NOT NULL AND removed_upstream_at IS NULL;

CREATE INDEX idx_activity_logs_team_metric_events ON activity_logs (team_id, created_at)
    INCLUDE (event_type)
    WHERE event_type IN ('commit_created', 'conflict_detected');

-- A team's recent activity (v_recent_activity filtered by team, newest first) without sorting
-- the team's whole history.
CREATE INDEX idx_activity_logs_team_created ON activity_logs (team_id, created_at DESC);

-- Metrics values ---------------------------------------------------------------------------------
UPDATE metrics SET stories_completed = COALESCE(stories_completed, 0),
                   commits_count = COALESCE(commits_count, 0),
                   conflicts_count = COALESCE(conflicts_count, 0)
WHERE stories_completed IS NULL OR commits_count IS NULL OR conflicts_count IS NULL;

ALTER TABLE metrics
    ALTER COLUMN stories_completed SET NOT NULL,
    ALTER COLUMN commits_count SET NOT NULL,
    ALTER COLUMN conflicts_count SET NOT NULL;

ALTER TABLE metrics ADD CONSTRAINT metrics_counts_non_negative
    CHECK (stories_completed >= 0 AND commits_count >= 0 AND conflicts_count >= 0) NOT VALID;
ALTER TABLE metrics ADD CONSTRAINT metrics_avg_completion_non_negative
    CHECK (avg_completion_time_hours >= 0) NOT VALID;

COMMENT ON COLUMN metrics.metric_date IS 'Day in C9_SYNC_METRICS_TZ (default UTC)';
COMMENT ON COLUMN metrics.stories_completed IS 'Work items completed that day (removed-upstream items excluded)';
COMMENT ON COLUMN metrics.commits_count IS 'activity_logs rows of event_type commit_created that day';
COMMENT ON COLUMN metrics.conflicts_count IS 'activity_logs rows of event_type conflict_detected that day';
COMMENT ON COLUMN metrics.avg_completion_time_hours IS 'Mean of completed_at - started_at over that day''s completions with a known start; NULL when none';

-- The seed's views, corrected --------------------------------------------------------------------
CREATE OR REPLACE VIEW v_active_teams AS
SELECT
    t.id,
    t.name,
    t.product,
    t.status,
    COALESCE(a.agent_count, 0) AS agent_count,
    COALESCE(a.active_agents, 0) AS active_agents,
    COALESCE(w.queued_work_items, 0) AS queued_work_items,
    COALESCE(w.in_progress_work_items, 0) AS in_progress_work_items
FROM teams t
LEFT JOIN (
    SELECT team_id,
           COUNT(*) AS agent_count,
           COUNT(*) FILTER (WHERE status = 'working') AS active_agents
    FROM agents GROUP BY team_id
) a ON a.team_id = t.id
LEFT JOIN (
    SELECT team_id,
           COUNT(*) FILTER (WHERE status = 'queued') AS queued_work_items,
           COUNT(*) FILTER (WHERE status = 'in_progress') AS in_progress_work_items
    FROM work_items
    WHERE removed_upstream_at IS NULL
    GROUP BY team_id
) w ON w.team_id = t.id
WHERE t.status IN ('active', 'paused');

COMMENT ON VIEW v_active_teams IS 'Active teams with agent and work item counts (items removed upstream excluded)';

CREATE OR REPLACE VIEW v_team_work_queue AS
SELECT
    w.id,
    w.team_id,
    t.name AS team_name,
    w.external_id,
    w.source,
    w.title,
    w.status,
    w.priority,
    w.assigned_at,
    w.started_at,
    w.external_url,
    w.external_key
FROM work_items w
JOIN teams t ON w.team_id = t.id
WHERE w.status IN ('queued', 'in_progress', 'pr_ready')
  AND w.removed_upstream_at IS NULL
ORDER BY w.priority DESC, w.assigned_at ASC;

COMMENT ON VIEW v_team_work_queue IS 'Active work queue across all teams (items removed upstream excluded)';

-- Dashboard views --------------------------------------------------------------------------------
CREATE VIEW v_team_status_counts AS
SELECT
    t.id AS team_id,
    t.name AS team_name,
    w.source,
    w.status,
    COUNT(*) FILTER (WHERE w.removed_upstream_at IS NULL) AS items,
    COUNT(*) FILTER (WHERE w.removed_upstream_at IS NOT NULL) AS removed_upstream,
    MAX(w.updated_at) AS last_changed_at
FROM work_items w
JOIN teams t ON t.id = w.team_id
GROUP BY t.id, t.name, w.source, w.status;

COMMENT ON VIEW v_team_status_counts IS 'Work items per team, source and status (removed-upstream items counted apart)';

CREATE VIEW v_integration_health AS
SELECT
    i.id AS integration_id,
    i.team_id,
    t.name AS team_name,
    i.type,
    i.name,
    i.is_active,
    i.sync_interval,
    COALESCE(s.last_success_at, i.last_sync) AS last_success_at,
    s.last_started_at,
    s.last_duration_s,
    s.last_error_at,
    s.last_error_class,
    s.last_error,
    COALESCE(s.consecutive_failures, 0) AS consecutive_failures,
    s.next_attempt_at,
    COALESCE(n.items, 0) AS items,
    COALESCE(n.removed_upstream, 0) AS removed_upstream,
    h.is_stale,
    CASE
        WHEN NOT i.is_active THEN 'paused'
        WHEN COALESCE(s.consecutive_failures, 0) > 0 THEN 'failing'
        WHEN COALESCE(s.last_success_at, i.last_sync) IS NULL THEN 'pending'
        WHEN h.is_stale THEN 'stale'
        ELSE 'ok'
    END AS health
FROM integrations i
JOIN teams t ON t.id = i.team_id
LEFT JOIN integration_sync_state s ON s.integration_id = i.id
LEFT JOIN LATERAL (
    SELECT COUNT(*) FILTER (WHERE w.removed_upstream_at IS NULL) AS items,
           COUNT(*) FILTER (WHERE w.removed_upstream_at IS NOT NULL) AS removed_upstream
    FROM work_items w
    WHERE w.integration_id = i.id
) n ON true
-- Stale: an active integration whose last success (or, never synced, its creation) is older than
-- two intervals: the scheduler should have run it twice by now.
CROSS JOIN LATERAL (
    SELECT i.is_active
           AND COALESCE(s.last_success_at, i.last_sync, i.created_at)
               < now() - make_interval(secs => 2 * i.sync_interval) AS is_stale
) h;

COMMENT ON VIEW v_integration_health IS 'Sync health per integration (never shows integrations.config)';

CREATE VIEW v_recent_activity AS
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

COMMENT ON VIEW v_recent_activity IS 'Activity newest first, with team, agent and work item labels; filter and LIMIT it';

CREATE VIEW v_team_metrics AS
SELECT
    m.team_id,
    t.name AS team_name,
    m.metric_date,
    m.stories_completed,
    m.commits_count,
    m.conflicts_count,
    m.avg_completion_time_hours,
    m.created_at
FROM metrics m
JOIN teams t ON t.id = m.team_id;

COMMENT ON VIEW v_team_metrics IS 'Daily metrics with the team name (one row per team and day with activity)';
