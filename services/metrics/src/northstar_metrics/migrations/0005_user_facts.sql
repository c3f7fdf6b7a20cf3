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

-- Retention counts per signup day, kept so that a cohort matrix sums a few rows per
-- cohort instead of joining each user's activity days (see adapters/user_facts.py).
-- `attr`/`value`: '' / '' for every user, else 'plan' or 'channel' and the user's
-- signup value (users without one are in no segment). `kind`:
--   0  the gaps between consecutive activity days of a user, x < y, bounded by
--      -infinity before the first day and +infinity after the last: a user has no
--      activity in [s, e] exactly when one of its gaps has x < s and y > e, and each
--      user has exactly one gap ending at +infinity (the cohort sizes);
--   1  activity days (x = y = the day);
--   2  ISO weeks with activity (x = y = the Monday);
--   3  calendar months with activity (x = y = the first day).
CREATE TABLE cohort_counts (
    tenant text NOT NULL,
    attr text NOT NULL,
    value text NOT NULL,
    kind smallint NOT NULL,
    signup_day date NOT NULL,
    x date NOT NULL,
    y date NOT NULL,
    users bigint NOT NULL,
    PRIMARY KEY (tenant, attr, value, kind, signup_day, x, y)
);
-- The gaps still open at a date (y > as_of): the +infinity ones, and few others.
CREATE INDEX cohort_gaps_by_end ON cohort_counts (tenant, attr, value, y, signup_day)
    INCLUDE (x, users)
    WHERE kind = 0;
-- The activity rows of a signup-day range, read without visiting the table.
CREATE INDEX cohort_active ON cohort_counts (tenant, attr, value, kind, signup_day, x)
    INCLUDE (users) WHERE kind > 0;
