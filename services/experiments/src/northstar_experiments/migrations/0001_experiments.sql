-- The experiments read model: one row per experiment (its folded state) and its history,
-- projected from the DOMAIN stream (domain.experiments.<tenant>.experiment.<key>).
CREATE TABLE experiments (
    tenant text NOT NULL,
    key text NOT NULL,
    status text NOT NULL,
    version bigint NOT NULL,
    state jsonb NOT NULL,
    PRIMARY KEY (tenant, key)
);
CREATE INDEX experiments_by_status ON experiments (tenant, status, key);

CREATE TABLE experiment_history (
    tenant text NOT NULL,
    key text NOT NULL,
    version bigint NOT NULL,
    type text NOT NULL,
    at_us bigint NOT NULL,
    actor text NOT NULL,
    event jsonb NOT NULL,
    PRIMARY KEY (tenant, key, version)
);

-- Exposures (experiment.exposure product events), duplicates removed: the first stored
-- (tenant, event_id) stands. First exposure per (experiment, user) is derived at query
-- time, because it depends on the analysis window.
CREATE TABLE exposures (
    tenant text NOT NULL,
    event_id text NOT NULL,
    experiment text NOT NULL,
    variant text NOT NULL,
    user_id text NOT NULL,
    ts_us bigint NOT NULL,
    PRIMARY KEY (tenant, event_id)
);
CREATE INDEX exposures_by_experiment ON exposures (tenant, experiment, user_id, ts_us);

-- Every user's events (name, time, properties): what experiment metrics are computed from.
CREATE TABLE user_events (
    tenant text NOT NULL,
    event_id text NOT NULL,
    user_id text NOT NULL,
    event text NOT NULL,
    ts_us bigint NOT NULL,
    properties jsonb NOT NULL,
    PRIMARY KEY (tenant, event_id)
);
CREATE INDEX user_events_by_name_user ON user_events (tenant, event, user_id, ts_us);
