-- 0017: the webhook deliveries already served (docs/webhooks.md), so that a delivery replayed or
-- retried by its tracker requests no second run, whichever replica it reaches.
--
--  * Only the tracker's delivery id is kept (GitHub's X-GitHub-Delivery, Linear's
--    Linear-Delivery, Jira's X-Atlassian-Webhook-Identifier), never the payload: a delivery is a
--    hint that something changed, and the next run reads the tracker itself.
--  * Rows are forgotten after a day (the listener deletes them as it goes): a tracker retries
--    within hours, and Linear's signed timestamp makes an older Linear delivery stale anyway.

CREATE TABLE webhook_deliveries (
    integration_id UUID NOT NULL REFERENCES integrations(id) ON DELETE CASCADE,
    delivery_id TEXT NOT NULL CHECK (length(delivery_id) BETWEEN 1 AND 200),
    received_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
    PRIMARY KEY (integration_id, delivery_id)
);

CREATE INDEX idx_webhook_deliveries_received_at ON webhook_deliveries(received_at);

COMMENT ON TABLE webhook_deliveries IS
    'Webhook delivery ids already served, per integration (no payload); kept a day';

-- The worker remembers and forgets deliveries; roles.sql may have run before this migration.
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'c9_sync_worker') THEN
        GRANT SELECT, INSERT, DELETE ON webhook_deliveries TO c9_sync_worker;
    END IF;
END
$$;
