-- 0003: tell running workers when an admin inserts, updates or deletes an integration, so the change
-- takes effect within seconds without a restart. The payload carries only the operation and the id:
-- NOTIFY payloads are visible to every listener and `config` may hold tokens.
-- Only columns that change scheduling notify; the worker's own writes (last_sync) do not.

CREATE FUNCTION notify_integrations_changed() RETURNS TRIGGER AS $$
DECLARE
    changed_id UUID;
BEGIN
    IF TG_OP = 'DELETE' THEN
        changed_id := OLD.id;
    ELSE
        changed_id := NEW.id;
    END IF;
    IF TG_OP = 'UPDATE'
       AND (NEW.team_id, NEW.type, NEW.name, NEW.config, NEW.is_active, NEW.sync_interval)
           IS NOT DISTINCT FROM
           (OLD.team_id, OLD.type, OLD.name, OLD.config, OLD.is_active, OLD.sync_interval) THEN
        RETURN NULL;
    END IF;
    PERFORM pg_notify('c9_sync_integrations',
                      json_build_object('op', lower(TG_OP), 'id', changed_id)::text);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER integrations_notify
    AFTER INSERT OR UPDATE OR DELETE ON integrations
    FOR EACH ROW EXECUTE FUNCTION notify_integrations_changed();
