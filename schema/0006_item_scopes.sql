-- 0006: which scope of its integration each item came from, so that narrowing an integration
-- (a repository, project, team, area path or work item type taken out of its config) marks the
-- items it no longer covers as out of scope — distinct from deleted upstream — and widening it
-- again brings them back. Scopes are the connector's cursor keys (docs/architecture.md).
--
--  * `sync_scope`: written by every sync that reads the item; NULL for rows synced before this
--    migration until they are read again (`c9-sync integrations reset ID` reads everything once).
--    A NULL scope is never marked out of scope: we cannot tell what covered it.
--  * `out_of_scope_at`: set when the integration's config stops covering the item's scope;
--    cleared when a sync reads the item again. Such items leave the work queue and the
--    queued / in-progress counts (no agent should pick up work nobody syncs any more) and are
--    counted apart in the status and health views. Their completions still count in `metrics`:
--    the work was done by the team.
--  * The deletion sweep leaves out-of-scope rows alone (they are not expected in the listing).

ALTER TABLE work_items ADD COLUMN sync_scope TEXT;
ALTER TABLE work_items ADD COLUMN out_of_scope_at TIMESTAMPTZ;

COMMENT ON COLUMN work_items.sync_scope IS 'Scope (cursor key) of the integration that last read the item: a repository, project, team…';
COMMENT ON COLUMN work_items.out_of_scope_at IS 'When the integration stopped covering the item''s scope (NULL while covered)';

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
    WHERE removed_upstream_at IS NULL AND out_of_scope_at IS NULL
    GROUP BY team_id
) w ON w.team_id = t.id
WHERE t.status IN ('active', 'paused');

COMMENT ON VIEW v_active_teams IS 'Active teams with agent and work item counts (items removed upstream or out of scope excluded)';

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
  AND w.out_of_scope_at IS NULL
ORDER BY w.priority DESC, w.assigned_at ASC;

COMMENT ON VIEW v_team_work_queue IS 'Active work queue across all teams (items removed upstream or out of scope excluded)';

CREATE OR REPLACE VIEW v_team_status_counts AS
SELECT
    t.id AS team_id,
    t.name AS team_name,
    w.source,
    w.status,
    COUNT(*) FILTER (WHERE w.removed_upstream_at IS NULL AND w.out_of_scope_at IS NULL) AS items,
    COUNT(*) FILTER (WHERE w.removed_upstream_at IS NOT NULL) AS removed_upstream,
    MAX(w.updated_at) AS last_changed_at,
    COUNT(*) FILTER (WHERE w.removed_upstream_at IS NULL AND w.out_of_scope_at IS NOT NULL)
        AS out_of_scope
FROM work_items w
JOIN teams t ON t.id = w.team_id
GROUP BY t.id, t.name, w.source, w.status;

COMMENT ON VIEW v_team_status_counts IS 'Work items per team, source and status (removed-upstream and out-of-scope items counted apart)';

CREATE OR REPLACE VIEW v_integration_health AS
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
    END AS health,
    COALESCE(n.out_of_scope, 0) AS out_of_scope
FROM integrations i
JOIN teams t ON t.id = i.team_id
LEFT JOIN integration_sync_state s ON s.integration_id = i.id
LEFT JOIN LATERAL (
    SELECT COUNT(*) FILTER (WHERE w.removed_upstream_at IS NULL AND w.out_of_scope_at IS NULL)
               AS items,
           COUNT(*) FILTER (WHERE w.removed_upstream_at IS NOT NULL) AS removed_upstream,
           COUNT(*) FILTER (WHERE w.removed_upstream_at IS NULL AND w.out_of_scope_at IS NOT NULL)
               AS out_of_scope
    FROM work_items w
    WHERE w.integration_id = i.id
) n ON true
CROSS JOIN LATERAL (
    SELECT i.is_active
           AND COALESCE(s.last_success_at, i.last_sync, i.created_at)
               < now() - make_interval(secs => 2 * i.sync_interval) AS is_stale
) h;

COMMENT ON VIEW v_integration_health IS 'Sync health per integration (never shows integrations.config)';
