-- Read models, projected from the DOMAIN stream (adapters/projection.py); a rebuild
-- truncates them and replays the log into the same rows.

-- Each schedule as its events fold it. `active_since` (epoch seconds, the log's time of
-- the event) is when it was created, or last resumed from a pause: the scheduler catches
-- up missed periods from there on, never from before.
CREATE TABLE report_schedules (
    tenant text NOT NULL,
    schedule_id text NOT NULL,
    version bigint NOT NULL,
    deleted boolean NOT NULL DEFAULT false,
    paused boolean NOT NULL DEFAULT false,
    schedule bytea NOT NULL,
    active_since double precision NOT NULL,
    PRIMARY KEY (tenant, schedule_id)
);

-- Every generated report (the whole Report message of its ReportGenerated event).
CREATE TABLE reports (
    tenant text NOT NULL,
    report_id text NOT NULL,
    schedule_id text NOT NULL,
    on_demand boolean NOT NULL,
    period_start date NOT NULL,
    generated_at timestamptz NOT NULL,
    report bytea NOT NULL,
    PRIMARY KEY (tenant, report_id)
);
-- ListReports: newest period first, then by id, per tenant (and per schedule).
CREATE INDEX reports_by_period ON reports (tenant, period_start DESC, report_id DESC);
CREATE INDEX reports_by_schedule ON reports (tenant, schedule_id, period_start DESC, report_id DESC);

-- Each report's deliveries: pending from its ReportGenerated, settled by ReportDelivered
-- (which may be projected first: the two are on different subjects).
CREATE TABLE report_deliveries (
    tenant text NOT NULL,
    report_id text NOT NULL,
    channel text NOT NULL,
    target text NOT NULL,
    delivery bytea NOT NULL,
    settled boolean NOT NULL DEFAULT false,
    PRIMARY KEY (tenant, report_id, channel, target)
);
