-- Notifications due, written in the same transaction as the alert state that made them
-- due (the transactional outbox): a crash between the two cannot lose or invent one.
-- The dispatcher delivers each row to each of its channels and records every attempt.
CREATE TABLE notification_outbox (
    notification_id bigserial PRIMARY KEY,
    tenant text NOT NULL,
    rule_id text NOT NULL,
    severity text NOT NULL CHECK (severity IN ('warning', 'critical')),
    kind text NOT NULL CHECK (kind IN ('firing', 'resolved', 'repeat')),
    -- Unique per (rule, severity, evaluation): an evaluation replayed after a crash adds nothing.
    dedup_key text NOT NULL,
    due_at timestamptz NOT NULL,
    -- Everything a channel renders: rule name, labels, annotations, value, threshold,
    -- since, acknowledgement, and the channels to deliver to (a snapshot of the rule).
    notice jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant, dedup_key)
);
CREATE INDEX notification_outbox_by_rule ON notification_outbox (tenant, rule_id, notification_id);
