-- Exact dedup of (tenant, event_id): the first stored event stands.
CREATE TABLE events_seen (
    tenant text NOT NULL,
    event_id text NOT NULL,
    fingerprint bytea NOT NULL,
    position bigint NOT NULL,
    PRIMARY KEY (tenant, event_id)
);

-- Days on which a user had activity.
CREATE TABLE user_days (
    tenant text NOT NULL,
    user_id text NOT NULL,
    day date NOT NULL,
    PRIMARY KEY (tenant, user_id, day)
);

-- Days on which an org had a successful workflow.run (for MAO).
CREATE TABLE org_success_days (
    tenant text NOT NULL,
    org_id text NOT NULL,
    day date NOT NULL,
    PRIMARY KEY (tenant, org_id, day)
);

-- Difference arrays of DAU, WAU, MAU and MAO: the value on day d is the sum
-- of the deltas of all days <= d (see domain/active_users.py).
CREATE TABLE active_deltas (
    tenant text NOT NULL,
    day date NOT NULL,
    dau bigint NOT NULL DEFAULT 0,
    wau bigint NOT NULL DEFAULT 0,
    mau bigint NOT NULL DEFAULT 0,
    mao bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, day)
);

-- Duplicates and id conflicts the projection saw, by the day they were received.
CREATE TABLE quality_daily (
    tenant text NOT NULL,
    day date NOT NULL,
    duplicates bigint NOT NULL DEFAULT 0,
    id_conflicts bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, day)
);
