-- One row per user with a signup: its earliest user.signup (timestamp, then event_id in
-- code point order: the "C" collation compares UTF-8 bytes, which orders like code
-- points) and the cohort attributes read from it, and the first time of each activation
-- stage at or after that signup. Retention, Activation and the signups series read the
-- users of a signup-day range from here instead of ranking every signup in history.
CREATE TABLE user_facts (
    tenant text NOT NULL,
    user_id text NOT NULL,
    signup_ts_us bigint NOT NULL,
    signup_event_id text COLLATE "C" NOT NULL,
    signup_day date NOT NULL,
    -- The signup's `plan` / `channel` property when it is a JSON string, else NULL.
    plan text,
    channel text,
    org_id text NOT NULL,
    integration_connected_us bigint,
    workflow_created_us bigint,
    workflow_run_succeeded_us bigint,
    PRIMARY KEY (tenant, user_id)
);
CREATE INDEX user_facts_by_signup_day ON user_facts (tenant, signup_day);
