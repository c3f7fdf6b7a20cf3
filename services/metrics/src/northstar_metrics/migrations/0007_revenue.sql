-- The subscription events revenue counts (domain/revenue.py `counted_state`), one row
-- per event with its `mrr` already read (0: not paying): Revenue and the MRR series
-- read these few narrow rows instead of every subscription.* event and its JSON.
-- `mrr` is numeric because a JSON integer has no bound.
CREATE TABLE subscription_states (
    tenant text NOT NULL,
    ts_us bigint NOT NULL,
    event_id text COLLATE "C" NOT NULL,
    org_id text NOT NULL,
    mrr numeric NOT NULL,
    PRIMARY KEY (tenant, ts_us, event_id)
);
-- One org's states in order: the projection re-derives an org's MRR steps from them.
CREATE INDEX subscription_states_by_org ON subscription_states (tenant, org_id, ts_us, event_id);

-- The change of MRR and of paying orgs at the end of each day (of the state's
-- timestamp), summed over orgs: MRR(d) = the sum of `mrr` over the days <= d. Each org
-- adds, at the day of each of its states, its new MRR minus the one before; rows back
-- at zero are removed, so that the table equals a rebuild's.
CREATE TABLE mrr_days (
    tenant text NOT NULL,
    day date NOT NULL,
    mrr numeric NOT NULL,
    paying bigint NOT NULL,
    PRIMARY KEY (tenant, day)
);

-- Per org, its earliest `user.signup` (timestamp, then event_id in code point order)
-- carrying its org_id, and that event's `channel` when it is a JSON string: the
-- org's acquisition channel for the per-channel CAC.
CREATE TABLE org_acquisition (
    tenant text NOT NULL,
    org_id text NOT NULL,
    ts_us bigint NOT NULL,
    event_id text COLLATE "C" NOT NULL,
    channel text,
    PRIMARY KEY (tenant, org_id)
);

-- Per org and month where they differ: its MRR at the month's start and at its end
-- (domain/revenue.py `org_month_ends`; 0: not paying). Only a month holding one of
-- the org's states can differ, so a month's movements sum the few orgs that changed
-- (start 0: new; end 0: churned) instead of comparing every org at both ends.
CREATE TABLE org_months (
    tenant text NOT NULL,
    month date NOT NULL,
    org_id text NOT NULL,
    mrr_start numeric NOT NULL,
    mrr_end numeric NOT NULL,
    PRIMARY KEY (tenant, month, org_id)
);

-- Users per signup day (their first `user.signup`, as in `user_facts`), split by whether
-- that signup's channel is the string `referral`: Revenue's signups, signup growth and
-- viral coefficient read a few rows per month here. Kept with `user_facts`: a user whose
-- signup moves earlier leaves its old day. Rows back at zero are removed.
CREATE TABLE signup_days (
    tenant text NOT NULL,
    day date NOT NULL,
    referral boolean NOT NULL,
    users bigint NOT NULL,
    PRIMARY KEY (tenant, day, referral)
);
