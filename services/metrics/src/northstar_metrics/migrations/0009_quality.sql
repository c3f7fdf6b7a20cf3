-- Per receive day (UTC day of received_at) also the accepted events, and those of them
-- whose request had a sent_at more than an hour from received_at (clock skew): the
-- DataQuality counts sum a few days here instead of scanning the period's events.
ALTER TABLE quality_daily
    ADD COLUMN accepted bigint NOT NULL DEFAULT 0,
    ADD COLUMN skewed bigint NOT NULL DEFAULT 0;

-- Accepted events per user and receive day: the users' receive days (for the spans
-- below) and the candidates for suspected bots (a user with more than 600 events in a
-- period of n days has more than 600 / n on one of them).
CREATE TABLE user_received_days (
    tenant text NOT NULL,
    user_id text NOT NULL,
    day date NOT NULL,
    events bigint NOT NULL,
    PRIMARY KEY (tenant, user_id, day)
);
CREATE INDEX user_received_days_by_events ON user_received_days (tenant, events, day);

-- The span rows (domain/spans.py) of the users' receive days, summed: users with an
-- accepted event received in any period (`orphan` false), and the same for the users
-- with no `user.signup` at all (`orphan` true; a user leaves when its signup arrives).
-- `kind`: 0 first days, 1 last days, 2 gaps, 3 days. Rows back at zero are removed.
CREATE TABLE received_spans (
    tenant text NOT NULL,
    orphan boolean NOT NULL,
    kind smallint NOT NULL,
    y date NOT NULL,
    x date NOT NULL,
    users bigint NOT NULL,
    PRIMARY KEY (tenant, orphan, kind, y, x)
);

-- Accepted well-known events lacking what their metrics need (domain/quality.py
-- `missing_fields`), per receive day and name: `field` '' counts the events, every
-- other row the events lacking that field.
CREATE TABLE missing_fields_days (
    tenant text NOT NULL,
    day date NOT NULL,
    event text NOT NULL,
    field text NOT NULL,
    events bigint NOT NULL,
    PRIMARY KEY (tenant, day, event, field)
);
