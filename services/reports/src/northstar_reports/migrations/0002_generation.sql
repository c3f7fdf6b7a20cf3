-- Generation and delivery state: what the scheduler and the dispatcher coordinate through.
-- Not a read model (a rebuild keeps it): it is how replicas agree on who does what.

-- One row per (schedule, period) a replica set out to generate. A replica claims a run by
-- inserting it, or by taking over a pending one whose lease ended (a crashed replica); the
-- run becomes `done` in the transaction that records its report (report_outbox) and its
-- deliveries, and only while the claimant still holds the lease. So a period is recorded
-- once whatever the replicas and crashes (application/scheduler.py).
CREATE TABLE report_runs (
    tenant text NOT NULL,
    schedule_id text NOT NULL,
    period_unit integer NOT NULL,
    period_start date NOT NULL,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done')),
    lease_owner text,
    lease_until timestamptz,
    report_id text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    done_at timestamptz,
    PRIMARY KEY (tenant, schedule_id, period_unit, period_start)
);

-- Domain events decided in a transaction, published to the log after it commits (the
-- transactional outbox). The msg-id makes a second publish within the log's duplicate
-- window a no-op; a ReportGenerated is also published only onto an empty subject
-- (expected version 0), so a second publish after the window is refused, never stored.
CREATE TABLE report_outbox (
    event_id bigserial PRIMARY KEY,
    tenant text NOT NULL,
    report_id text NOT NULL,
    subject text NOT NULL,
    msg_id text NOT NULL UNIQUE,
    type text NOT NULL,
    payload bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX report_outbox_pending ON report_outbox (event_id) WHERE published_at IS NULL;
CREATE INDEX report_outbox_by_report ON report_outbox (report_id, type);

-- One delivery per (report, channel target), written with the report's outbox row.
CREATE TABLE deliveries (
    delivery_id text PRIMARY KEY,
    tenant text NOT NULL,
    report_id text NOT NULL,
    channel text NOT NULL CHECK (channel IN ('webhook', 'slack', 'email')),
    target text NOT NULL,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts integer NOT NULL DEFAULT 0,
    -- Due time while pending; while an attempt is in flight, the end of its lease.
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error text NOT NULL DEFAULT '',
    delivered_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (report_id, channel, target)
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';

-- Tenants whose default schedules were installed.
CREATE TABLE report_tenants (
    tenant text PRIMARY KEY,
    defaults_installed_at timestamptz NOT NULL DEFAULT now()
);
