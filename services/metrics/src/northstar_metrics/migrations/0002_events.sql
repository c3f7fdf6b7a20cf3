-- Every accepted product event, duplicates removed (the first stored stands):
-- the base of the ad-hoc queries (funnels, trends) and of the per-user facts.
CREATE TABLE events (
    tenant text NOT NULL,
    event_id text NOT NULL,
    event text NOT NULL,
    user_id text NOT NULL,
    org_id text NOT NULL,
    session_id text NOT NULL,
    ts_us bigint NOT NULL,
    original_ts_us bigint NOT NULL,
    received_at_us bigint NOT NULL,
    sent_at_us bigint NOT NULL,
    properties jsonb NOT NULL,
    position bigint NOT NULL,
    PRIMARY KEY (tenant, event_id)
);
CREATE INDEX events_by_name_time ON events (tenant, event, ts_us);
CREATE INDEX events_by_user_time ON events (tenant, user_id, ts_us) WHERE user_id <> '';
CREATE INDEX events_by_received ON events (tenant, received_at_us);

-- What ingest told clients but the log does not otherwise show: rejections and
-- whole-request duplicates (projected from the DOMAIN stream's RequestReceived).
CREATE TABLE ingest_requests (
    tenant text NOT NULL,
    position bigint NOT NULL,
    received_at_us bigint NOT NULL,
    sent_at_us bigint NOT NULL,
    accepted bigint NOT NULL,
    duplicate bigint NOT NULL,
    rejections jsonb NOT NULL,
    PRIMARY KEY (tenant, position)
);
