-- Times are epoch seconds (double precision), exactly the floats the domain computes with,
-- so an evaluation time read back compares equal to the one written.

-- Each rule as the rules projection folds it from the log, with its evaluation schedule and
-- the lease of the evaluator running it. A replica claims a due rule by setting
-- lease_owner / lease_until / eval_at in one UPDATE over rows locked FOR UPDATE SKIP LOCKED;
-- its result is committed only while it still holds the lease (see application/scheduler.py).
CREATE TABLE alert_rules (
    tenant text NOT NULL,
    rule_id text NOT NULL,
    version bigint NOT NULL,
    deleted boolean NOT NULL DEFAULT false,
    rule jsonb NOT NULL,
    interval_s integer NOT NULL,
    next_due_at double precision NOT NULL DEFAULT '-Infinity',
    -- The evaluation time of the run in flight (kept across a lost lease, so the retry
    -- writes the same notices and publishes the same transition ids).
    eval_at double precision,
    lease_owner text,
    lease_until double precision,
    last_evaluated_at double precision,
    last_error text NOT NULL DEFAULT '',
    PRIMARY KEY (tenant, rule_id)
);
CREATE INDEX alert_rules_due ON alert_rules (next_due_at) WHERE NOT deleted;

-- The current state of each (rule, severity): domain/state.py's AlertState.
CREATE TABLE alert_state (
    tenant text NOT NULL,
    rule_id text NOT NULL,
    severity text NOT NULL CHECK (severity IN ('warning', 'critical')),
    status text NOT NULL CHECK (status IN ('INACTIVE', 'PENDING', 'FIRING', 'RESOLVED')),
    since double precision,
    active_at double precision,
    last_breach_at double precision,
    value double precision,
    threshold double precision,
    last_notified_at double precision,
    notified_firing boolean NOT NULL DEFAULT false,
    acked_by text NOT NULL DEFAULT '',
    ack_comment text NOT NULL DEFAULT '',
    PRIMARY KEY (tenant, rule_id, severity)
);

-- Every evaluation of a rule: ok, no value, or error (metrics unreachable...).
CREATE TABLE alert_evaluations (
    tenant text NOT NULL,
    rule_id text NOT NULL,
    evaluated_at double precision NOT NULL,
    outcome text NOT NULL CHECK (outcome IN ('ok', 'no_value', 'error')),
    value double precision,
    error text NOT NULL DEFAULT '',
    evaluator text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, rule_id, evaluated_at)
);
CREATE INDEX alert_evaluations_by_age ON alert_evaluations (recorded_at);

-- Domain events (alert transitions, acknowledgements) written in the transaction that
-- decided them, then published to the log with their msg-id; a row left unpublished by a
-- crash is published again (the log's duplicate window drops a second copy).
CREATE TABLE event_outbox (
    event_id bigserial PRIMARY KEY,
    subject text NOT NULL,
    msg_id text NOT NULL UNIQUE,
    type text NOT NULL,
    payload bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX event_outbox_pending ON event_outbox (event_id) WHERE published_at IS NULL;

-- Tenants whose default KPI rules were installed.
CREATE TABLE alert_tenants (
    tenant text PRIMARY KEY,
    defaults_installed_at timestamptz NOT NULL DEFAULT now()
);
