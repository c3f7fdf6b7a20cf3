-- One delivery per (notification, channel target), added by a trigger in the transaction
-- that writes the outbox row, so a notification due always has its deliveries.
CREATE TABLE deliveries (
    delivery_id bigserial PRIMARY KEY,
    notification_id bigint NOT NULL REFERENCES notification_outbox ON DELETE CASCADE,
    tenant text NOT NULL,
    channel text NOT NULL CHECK (channel IN ('webhook', 'slack', 'email')),
    target text NOT NULL,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts integer NOT NULL DEFAULT 0,
    -- Due time while pending; while an attempt is in flight, the end of its lease.
    next_attempt_at timestamptz NOT NULL,
    last_error text NOT NULL DEFAULT '',
    delivered_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (notification_id, channel, target)
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_by_tenant ON deliveries (tenant, notification_id);

-- Every attempt: recorded in_flight before the send, its outcome after.
CREATE TABLE delivery_attempts (
    delivery_id bigint NOT NULL REFERENCES deliveries ON DELETE CASCADE,
    attempt integer NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    outcome text NOT NULL DEFAULT 'in_flight'
        CHECK (outcome IN ('in_flight', 'delivered', 'retry', 'failed', 'interrupted', 'unknown')),
    http_status integer,
    smtp_reply text NOT NULL DEFAULT '',
    error text NOT NULL DEFAULT '',
    duration_ms double precision,
    PRIMARY KEY (delivery_id, attempt)
);

-- The channel targets of a notice: one row per webhook URL, Slack URL and email address.
CREATE FUNCTION notice_targets(notice jsonb) RETURNS TABLE (channel text, target text)
LANGUAGE sql IMMUTABLE AS $$
    SELECT 'webhook', jsonb_array_elements_text(COALESCE(notice -> 'channels' -> 'webhooks', '[]'))
    UNION ALL
    SELECT 'slack', jsonb_array_elements_text(COALESCE(notice -> 'channels' -> 'slack', '[]'))
    UNION ALL
    SELECT 'email', jsonb_array_elements_text(COALESCE(notice -> 'channels' -> 'emails', '[]'))
$$;

-- `SET search_path FROM CURRENT` pins the service's schema (the migration's search path),
-- whatever the writer's session says.
CREATE FUNCTION add_deliveries() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO deliveries (notification_id, tenant, channel, target, next_attempt_at)
    SELECT NEW.notification_id, NEW.tenant, t.channel, t.target, NEW.due_at
    FROM notice_targets(NEW.notice) t
    ON CONFLICT (notification_id, channel, target) DO NOTHING;
    RETURN NEW;
END
$$;

CREATE TRIGGER notification_outbox_deliveries
AFTER INSERT ON notification_outbox
FOR EACH ROW EXECUTE FUNCTION add_deliveries();

-- Notifications written before this migration get their deliveries too.
INSERT INTO deliveries (notification_id, tenant, channel, target, next_attempt_at)
SELECT o.notification_id, o.tenant, t.channel, t.target, o.due_at
FROM notification_outbox o, notice_targets(o.notice) t
ON CONFLICT (notification_id, channel, target) DO NOTHING;
