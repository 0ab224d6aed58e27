-- 0005: the config a run used, so an admin's edit after a successful run makes the integration
-- due at once. Without it the run started for the edit found "synced 40s ago" and skipped: a
-- fixed token or a widened scope waited a whole interval. md5 of the JSON text, as the scheduler
-- compares it; never the config itself (this table is readable where `config` is not).
ALTER TABLE integration_sync_state ADD COLUMN config_digest TEXT;

COMMENT ON COLUMN integration_sync_state.config_digest IS
    'md5 of integrations.config as the last started run read it';
