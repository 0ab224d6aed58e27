-- 0012: a richer tracker-neutral model: hierarchy, item types, labels, assignees, custom fields by
-- name, and sprints (Jira sprints, Azure DevOps iterations, Linear cycles, GitHub milestones).
--
-- The seed keeps one row per item with its columns and the raw JSON; parents, sprints, labels,
-- assignees and custom fields were buried in `external_data` in each tracker's own shape, so no
-- dashboard could group by them without knowing the tracker.
--
--  * `parent_id` links an item to its parent (epic, parent issue, sub-issue's parent) in the same
--    source. `parent_external_id` keeps the tracker's id of the parent, so whichever of parent and
--    child is synced first, the link is made when the other arrives. ON DELETE SET NULL: deleting a
--    parent row never deletes its children.
--  * `item_type`: epic, feature, story, task, bug, sub_task, issue, pull_request or other;
--    `item_type_name` the tracker's own name ("User Story", "Sub-task").
--  * `labels` (text[], GIN-indexed for `labels @> ARRAY['x']`), `assignees` (JSONB array of
--    {name, account_id}; never e-mail addresses), `fields` (JSONB: the integration's
--    `extra_fields`, keyed by the name the admin gave).
--  * `sprints` and `work_item_sprints`: membership with the time it was first seen (or known from
--    history) and the time it ended; an item carried over keeps its old membership, closed.

ALTER TABLE work_items
    ADD COLUMN parent_id UUID REFERENCES work_items(id) ON DELETE SET NULL,
    ADD COLUMN parent_external_id VARCHAR(255),
    ADD COLUMN item_type VARCHAR(20),
    ADD COLUMN item_type_name VARCHAR(255),
    ADD COLUMN labels TEXT[] NOT NULL DEFAULT '{}',
    ADD COLUMN assignees JSONB NOT NULL DEFAULT '[]'::jsonb,
    ADD COLUMN fields JSONB NOT NULL DEFAULT '{}'::jsonb;

ALTER TABLE work_items ADD CONSTRAINT work_items_item_type_check CHECK (item_type IN (
    'epic', 'feature', 'story', 'task', 'bug', 'sub_task', 'issue', 'pull_request', 'other'));
ALTER TABLE work_items ADD CONSTRAINT work_items_not_own_parent CHECK (parent_id <> id);

CREATE INDEX work_items_parent ON work_items (parent_id) WHERE parent_id IS NOT NULL;
-- children waiting for a parent not synced yet
CREATE INDEX work_items_waiting_parent ON work_items (source, parent_external_id)
    WHERE parent_external_id IS NOT NULL AND parent_id IS NULL;
CREATE INDEX work_items_labels ON work_items USING gin (labels);

COMMENT ON COLUMN work_items.parent_id IS 'The parent item (epic, parent issue) in the same source; NULL until it is synced';
COMMENT ON COLUMN work_items.parent_external_id IS 'The tracker''s id of the parent (links it when it arrives)';
COMMENT ON COLUMN work_items.item_type IS 'epic, feature, story, task, bug, sub_task, issue, pull_request or other';
COMMENT ON COLUMN work_items.item_type_name IS 'The tracker''s own name of the item type';
COMMENT ON COLUMN work_items.labels IS 'Labels / tags as the tracker names them';
COMMENT ON COLUMN work_items.assignees IS 'JSON array of {name, account_id} (never e-mail addresses)';
COMMENT ON COLUMN work_items.fields IS 'The integration''s extra_fields, keyed by the name the admin gave';

CREATE TABLE sprints (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    source VARCHAR(50) NOT NULL,
    external_id VARCHAR(255) NOT NULL,
    integration_id UUID REFERENCES integrations(id) ON DELETE SET NULL,
    team_id UUID NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    name VARCHAR(500) NOT NULL,
    state VARCHAR(20),
    starts_at TIMESTAMPTZ,
    ends_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),

    CONSTRAINT sprints_source_id_unique UNIQUE (source, external_id),
    CONSTRAINT sprints_state_check CHECK (state IN ('future', 'active', 'closed'))
);
CREATE INDEX sprints_team ON sprints (team_id, starts_at);
COMMENT ON TABLE sprints IS 'Sprints, iterations, cycles and milestones, tracker-neutral';

CREATE TABLE work_item_sprints (
    work_item_id UUID NOT NULL REFERENCES work_items(id) ON DELETE CASCADE,
    sprint_id UUID NOT NULL REFERENCES sprints(id) ON DELETE CASCADE,
    added_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    removed_at TIMESTAMPTZ,
    PRIMARY KEY (work_item_id, sprint_id)
);
CREATE INDEX work_item_sprints_sprint ON work_item_sprints (sprint_id);
COMMENT ON TABLE work_item_sprints IS 'Which items are (removed_at NULL) or were in which sprint';
COMMENT ON COLUMN work_item_sprints.added_at IS 'When the item joined the sprint: from history when known, else the first sync that saw it';

-- Per sprint: its scope now, what is done, what came in after it started, what left it.
CREATE VIEW v_sprint_progress AS
SELECT s.id AS sprint_id, s.team_id, s.source, s.name, s.state, s.starts_at, s.ends_at,
       count(w.id) FILTER (WHERE ws.removed_at IS NULL)::int AS scope_items,
       count(w.id) FILTER (WHERE ws.removed_at IS NULL AND w.status = 'completed')::int
           AS done_items,
       count(w.id) FILTER (WHERE ws.removed_at IS NULL AND ws.added_at > s.starts_at)::int
           AS added_after_start,
       count(w.id) FILTER (WHERE ws.removed_at IS NOT NULL)::int AS removed_items,
       COALESCE(sum(w.story_points) FILTER (WHERE ws.removed_at IS NULL), 0)::int
           AS scope_points,
       COALESCE(sum(w.story_points) FILTER (WHERE ws.removed_at IS NULL
                                            AND w.status = 'completed'), 0)::int AS done_points
FROM sprints s
LEFT JOIN work_item_sprints ws ON ws.sprint_id = s.id
LEFT JOIN work_items w ON w.id = ws.work_item_id AND w.removed_upstream_at IS NULL
GROUP BY s.id, s.team_id, s.source, s.name, s.state, s.starts_at, s.ends_at;

COMMENT ON VIEW v_sprint_progress IS 'Per sprint: items and points in scope and done, added after the start, removed';

-- Per parent (an epic, or any item with children): its children by status.
CREATE VIEW v_epic_rollup AS
SELECT p.id AS parent_id, p.team_id, p.source, p.external_key, p.title, p.item_type,
       p.status,
       count(c.id)::int AS children,
       count(c.id) FILTER (WHERE c.status = 'queued')::int AS queued,
       count(c.id) FILTER (WHERE c.status = 'in_progress')::int AS in_progress,
       count(c.id) FILTER (WHERE c.status = 'pr_ready')::int AS pr_ready,
       count(c.id) FILTER (WHERE c.status = 'completed')::int AS completed,
       count(c.id) FILTER (WHERE c.status = 'blocked')::int AS blocked,
       count(c.id) FILTER (WHERE c.status = 'cancelled')::int AS cancelled,
       COALESCE(sum(c.story_points), 0)::int AS points,
       COALESCE(sum(c.story_points) FILTER (WHERE c.status = 'completed'), 0)::int
           AS points_done
FROM work_items p
JOIN work_items c ON c.parent_id = p.id AND c.removed_upstream_at IS NULL
WHERE p.removed_upstream_at IS NULL
GROUP BY p.id, p.team_id, p.source, p.external_key, p.title, p.item_type, p.status;

COMMENT ON VIEW v_epic_rollup IS 'Per parent item: children by status and their points';
