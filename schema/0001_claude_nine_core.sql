-- 0001: the Claude-Nine core schema (seed 004_c94b59e6d2094b8f: teams, agents, work_items,
-- integrations, activity_logs, metrics and the two views).
--
-- Reviewed before copying. Changes from the seed, and why:
--  * No extensions. `uuid-ossp` is contrib and absent from the embedded server (and from many
--    managed services without a superuser); `gen_random_uuid()` is core since PostgreSQL 13.
--    `btree_gist` was created but nothing used it.
--  * created_at/updated_at are NOT NULL: a NULL timestamp breaks every "recent" query and sort.
--    `integrations.is_active` and `sync_interval` are NOT NULL too: a NULL would be neither active
--    nor paused, and an interval of NULL has no meaning for the scheduler. `sync_interval` must be
--    at least 5 seconds so a typo cannot make the worker hammer a tracker's API.
--  * `work_items.external_url` is TEXT: trackers' URLs can exceed 500 characters and a truncated URL
--    is a broken link (titles stay VARCHAR(500); the worker truncates them on purpose).
--  * The updated_at trigger only bumps the timestamp when the row really changed, so a no-op
--    UPDATE does not look like a change to dashboards. `language 'plpgsql'` (quoted) is deprecated.
--  * `idx_work_items_external_id (source, external_id)` is not created: it duplicated, column for
--    column, the index PostgreSQL builds for UNIQUE (source, external_id), and work_items is the
--    table every sync writes. (Prefix indexes such as idx_integrations_team_id are kept: their
--    tables are small and rarely written.)
--  * `v_active_teams` joined agents and work_items to the team at once, so every count was
--    multiplied by the other table's row count (2 agents x 3 items counted 6 agents). Counts are
--    now aggregated per table before the join.
--  * The seed's example rows (Demo Team and its agents) are demo data, not schema: `c9-sync demo`
--    inserts them.

CREATE OR REPLACE FUNCTION update_updated_at_column()
RETURNS TRIGGER AS $$
BEGIN
    IF NEW IS DISTINCT FROM OLD THEN
        NEW.updated_at = CURRENT_TIMESTAMP;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

-- Teams ------------------------------------------------------------------------------------------
CREATE TABLE teams (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name VARCHAR(255) NOT NULL,
    product VARCHAR(255) NOT NULL,
    repo_path VARCHAR(500) NOT NULL,
    main_branch VARCHAR(100) DEFAULT 'main',
    status VARCHAR(50) NOT NULL DEFAULT 'stopped',
    created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT teams_status_check CHECK (status IN ('active', 'paused', 'stopped', 'error')),
    CONSTRAINT teams_name_unique UNIQUE (name)
);

CREATE INDEX idx_teams_status ON teams(status);
CREATE INDEX idx_teams_product ON teams(product);

CREATE TRIGGER update_teams_updated_at BEFORE UPDATE ON teams
    FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();

COMMENT ON TABLE teams IS 'Development teams managed by Claude-Nine';
COMMENT ON COLUMN teams.status IS 'Team status: active, paused, stopped, error';

-- Agents -----------------------------------------------------------------------------------------
CREATE TABLE agents (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    team_id UUID NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    name VARCHAR(255) NOT NULL,
    role VARCHAR(255) NOT NULL,
    goal TEXT,
    worktree_path VARCHAR(500),
    current_branch VARCHAR(255),
    status VARCHAR(50) NOT NULL DEFAULT 'idle',
    last_activity TIMESTAMP WITH TIME ZONE,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT agents_status_check CHECK (status IN ('idle', 'working', 'blocked', 'error')),
    CONSTRAINT agents_team_name_unique UNIQUE (team_id, name)
);

CREATE INDEX idx_agents_team_id ON agents(team_id);
CREATE INDEX idx_agents_status ON agents(status);
CREATE INDEX idx_agents_last_activity ON agents(last_activity DESC);

CREATE TRIGGER update_agents_updated_at BEFORE UPDATE ON agents
    FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();

COMMENT ON TABLE agents IS 'AI agents (developers) belonging to teams';
COMMENT ON COLUMN agents.status IS 'Agent status: idle, working, blocked, error';

-- Work items -------------------------------------------------------------------------------------
CREATE TABLE work_items (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    team_id UUID REFERENCES teams(id) ON DELETE SET NULL,
    external_id VARCHAR(255) NOT NULL,
    source VARCHAR(50) NOT NULL,
    title VARCHAR(500) NOT NULL,
    description TEXT,
    acceptance_criteria TEXT,
    status VARCHAR(50) NOT NULL DEFAULT 'queued',
    priority INTEGER DEFAULT 0,
    story_points INTEGER,
    external_url TEXT,
    external_data JSONB,
    assigned_at TIMESTAMP WITH TIME ZONE,
    started_at TIMESTAMP WITH TIME ZONE,
    completed_at TIMESTAMP WITH TIME ZONE,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT work_items_status_check CHECK (status IN ('queued', 'in_progress', 'pr_ready', 'completed', 'blocked', 'cancelled')),
    CONSTRAINT work_items_source_check CHECK (source IN ('azure_devops', 'jira', 'github', 'linear', 'manual')),
    CONSTRAINT work_items_source_id_unique UNIQUE (source, external_id)
);

CREATE INDEX idx_work_items_team_id ON work_items(team_id);
CREATE INDEX idx_work_items_status ON work_items(status);
CREATE INDEX idx_work_items_source ON work_items(source);
CREATE INDEX idx_work_items_priority ON work_items(priority DESC);
CREATE INDEX idx_work_items_assigned_at ON work_items(assigned_at DESC NULLS LAST);
CREATE INDEX idx_work_items_external_data ON work_items USING GIN (external_data);

CREATE TRIGGER update_work_items_updated_at BEFORE UPDATE ON work_items
    FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();

COMMENT ON TABLE work_items IS 'User stories/PBIs/Issues from external PM tools';
COMMENT ON COLUMN work_items.external_data IS 'Full JSON response from source system (ADO, Jira, etc)';

-- Integrations -----------------------------------------------------------------------------------
CREATE TABLE integrations (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    team_id UUID NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    type VARCHAR(50) NOT NULL,
    name VARCHAR(255),
    config JSONB NOT NULL,
    is_active BOOLEAN NOT NULL DEFAULT true,
    last_sync TIMESTAMP WITH TIME ZONE,
    sync_interval INTEGER NOT NULL DEFAULT 300,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT integrations_type_check CHECK (type IN ('azure_devops', 'jira', 'github', 'linear')),
    CONSTRAINT integrations_team_type_unique UNIQUE (team_id, type),
    CONSTRAINT integrations_sync_interval_check CHECK (sync_interval >= 5)
);

CREATE INDEX idx_integrations_team_id ON integrations(team_id);
CREATE INDEX idx_integrations_type ON integrations(type);
CREATE INDEX idx_integrations_is_active ON integrations(is_active);
CREATE INDEX idx_integrations_config ON integrations USING GIN (config);

CREATE TRIGGER update_integrations_updated_at BEFORE UPDATE ON integrations
    FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();

COMMENT ON TABLE integrations IS 'PM tool integrations (ADO, Jira, GitHub, etc)';
COMMENT ON COLUMN integrations.config IS 'Integration-specific config (API keys, queries, etc)';

-- Activity logs ----------------------------------------------------------------------------------
CREATE TABLE activity_logs (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    team_id UUID REFERENCES teams(id) ON DELETE CASCADE,
    agent_id UUID REFERENCES agents(id) ON DELETE CASCADE,
    work_item_id UUID REFERENCES work_items(id) ON DELETE SET NULL,
    event_type VARCHAR(100) NOT NULL,
    message TEXT NOT NULL,
    metadata JSONB,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE INDEX idx_activity_logs_team_id ON activity_logs(team_id);
CREATE INDEX idx_activity_logs_agent_id ON activity_logs(agent_id);
CREATE INDEX idx_activity_logs_work_item_id ON activity_logs(work_item_id);
CREATE INDEX idx_activity_logs_event_type ON activity_logs(event_type);
CREATE INDEX idx_activity_logs_created_at ON activity_logs(created_at DESC);

COMMENT ON TABLE activity_logs IS 'Audit trail of all team/agent/work item activities';
COMMENT ON COLUMN activity_logs.event_type IS 'e.g., agent_started, commit_created, conflict_detected, work_completed';

-- Metrics ----------------------------------------------------------------------------------------
CREATE TABLE metrics (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    team_id UUID REFERENCES teams(id) ON DELETE CASCADE,
    metric_date DATE NOT NULL,
    stories_completed INTEGER DEFAULT 0,
    commits_count INTEGER DEFAULT 0,
    conflicts_count INTEGER DEFAULT 0,
    avg_completion_time_hours NUMERIC(10, 2),
    created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT metrics_team_date_unique UNIQUE (team_id, metric_date)
);

CREATE INDEX idx_metrics_team_id ON metrics(team_id);
CREATE INDEX idx_metrics_date ON metrics(metric_date DESC);

COMMENT ON TABLE metrics IS 'Daily metrics for team performance tracking';

-- Views ------------------------------------------------------------------------------------------
CREATE VIEW v_active_teams AS
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
    FROM work_items GROUP BY team_id
) w ON w.team_id = t.id
WHERE t.status IN ('active', 'paused');

COMMENT ON VIEW v_active_teams IS 'Active teams with agent and work item counts';

CREATE VIEW v_team_work_queue AS
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
    w.external_url
FROM work_items w
JOIN teams t ON w.team_id = t.id
WHERE w.status IN ('queued', 'in_progress', 'pr_ready')
ORDER BY w.priority DESC, w.assigned_at ASC;

COMMENT ON VIEW v_team_work_queue IS 'Active work queue across all teams';
