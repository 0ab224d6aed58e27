-- 0008: several integrations of one tracker per team. The seed's UNIQUE (team_id, type) allowed
-- one Jira, one GitHub… per team: a team with two Jira sites, or with issues in two GitHub
-- organisations (two credentials), could not be configured. An integration is now identified,
-- for people, by (team, type, name); its id stays the identity everything else references.
--
--  * `name` becomes NOT NULL: it is what tells two integrations of one type apart (the CLI's
--    TEAM/TYPE/NAME, `status`, `v_integration_health`). A nullable name cannot carry the
--    uniqueness: PostgreSQL 14 (supported) has no UNIQUE … NULLS NOT DISTINCT, so two unnamed
--    rows of one type would both be allowed and neither could be named.
--  * Existing rows without a name (NULL or blank) are named after their type (`jira`): unique,
--    since the old constraint allowed one row per team and type, and readable. Named rows keep
--    their name. The backfill is not an admin edit: it neither bumps `updated_at` (which would
--    clear a failing integration's backoff) nor notifies running workers.
--  * Writers that do not know about names (the Claude-Nine app, hand-written SQL, older scripts)
--    keep working: a trigger names a row inserted or updated without a name after its type.
--    Their second row of a type is refused exactly as before (now by
--    integrations_team_type_name_unique), and only a named second row is new.
--  * A blank name is refused (integrations_name_not_blank): it would print as nothing.
--  * Views: v_team_status_counts keeps its grain (team, source, status: one tracker's items
--    summed over the team's integrations of that type; no item is counted twice, an item has one
--    row). The new v_integration_status_counts gives the same counts per integration, so two
--    Jira sites of one team are never merged. v_integration_health was already per integration.

-- Name the unnamed rows (without firing the updated_at and NOTIFY triggers: see above).
ALTER TABLE integrations DISABLE TRIGGER update_integrations_updated_at;
ALTER TABLE integrations DISABLE TRIGGER integrations_notify;
UPDATE integrations SET name = type WHERE name IS NULL OR btrim(name) = '';
ALTER TABLE integrations ENABLE TRIGGER update_integrations_updated_at;
ALTER TABLE integrations ENABLE TRIGGER integrations_notify;

ALTER TABLE integrations ALTER COLUMN name SET NOT NULL;
ALTER TABLE integrations ADD CONSTRAINT integrations_name_not_blank CHECK (btrim(name) <> '');
ALTER TABLE integrations DROP CONSTRAINT integrations_team_type_unique;
ALTER TABLE integrations
    ADD CONSTRAINT integrations_team_type_name_unique UNIQUE (team_id, type, name);

CREATE FUNCTION integrations_default_name() RETURNS TRIGGER AS $$
BEGIN
    IF NEW.name IS NULL OR btrim(NEW.name) = '' THEN
        NEW.name := NEW.type;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER integrations_default_name BEFORE INSERT OR UPDATE OF name ON integrations
    FOR EACH ROW EXECUTE FUNCTION integrations_default_name();

COMMENT ON COLUMN integrations.name IS
    'Tells a team''s integrations of one type apart (unique per team and type); defaults to the type';

CREATE VIEW v_integration_status_counts AS
SELECT
    w.team_id,
    t.name AS team_name,
    w.integration_id,
    i.name AS integration_name,
    w.source,
    w.status,
    COUNT(*) FILTER (WHERE w.removed_upstream_at IS NULL AND w.out_of_scope_at IS NULL) AS items,
    COUNT(*) FILTER (WHERE w.removed_upstream_at IS NOT NULL) AS removed_upstream,
    COUNT(*) FILTER (WHERE w.removed_upstream_at IS NULL AND w.out_of_scope_at IS NOT NULL)
        AS out_of_scope,
    MAX(w.updated_at) AS last_changed_at
FROM work_items w
JOIN teams t ON t.id = w.team_id
LEFT JOIN integrations i ON i.id = w.integration_id
GROUP BY w.team_id, t.name, w.integration_id, i.name, w.source, w.status;

COMMENT ON VIEW v_integration_status_counts IS
    'Work items per team, integration and status (integration NULL: manual items, or synced by an integration since removed)';
