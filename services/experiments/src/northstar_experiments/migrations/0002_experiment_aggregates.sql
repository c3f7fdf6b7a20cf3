-- The results read model: per (experiment, user) the first exposure, per (experiment, metric,
-- user) the metric's values, and per (experiment, metric, variant) running sums, kept by the
-- projectors so GetResults reads sufficient statistics instead of scanning events.
-- `params` is what the rows were computed for (analysis start, upper bound, variants,
-- metrics): when the definition changes it, the experiment's rows are rebuilt.
CREATE TABLE experiment_aggregates (
    tenant text NOT NULL,
    experiment text NOT NULL,
    params text NOT NULL,
    multiple_exposures bigint NOT NULL DEFAULT 0,
    unknown_variant_exposures bigint NOT NULL DEFAULT 0,
    -- An upper bound of every counted exposure's and event's timestamp: an analysis end at
    -- or after it sees exactly these rows.
    max_ts_us bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, experiment)
);

CREATE TABLE experiment_users (
    tenant text NOT NULL,
    experiment text NOT NULL,
    user_id text NOT NULL,
    variant text,
    first_ts_us bigint,
    first_event_id text,
    multiple boolean NOT NULL,
    unknown_variant_exposures bigint NOT NULL,
    last_ts_us bigint NOT NULL,
    PRIMARY KEY (tenant, experiment, user_id)
);
-- Which experiments a user's new event can change: one index probe per user.
CREATE INDEX experiment_users_by_user ON experiment_users (tenant, user_id);

CREATE TABLE experiment_user_metrics (
    tenant text NOT NULL,
    experiment text NOT NULL,
    metric text NOT NULL,
    user_id text NOT NULL,
    variant text NOT NULL,
    post float8 NOT NULL,
    pre float8 NOT NULL,
    last_ts_us bigint NOT NULL,
    PRIMARY KEY (tenant, experiment, metric, user_id)
);

-- metric '' holds the population (users per variant, counted once each).
CREATE TABLE experiment_sums (
    tenant text NOT NULL,
    experiment text NOT NULL,
    metric text NOT NULL,
    variant text NOT NULL,
    users bigint NOT NULL,
    s float8 NOT NULL,
    ss float8 NOT NULL,
    ps float8 NOT NULL,
    pss float8 NOT NULL,
    pp float8 NOT NULL,
    PRIMARY KEY (tenant, experiment, metric, variant)
);
