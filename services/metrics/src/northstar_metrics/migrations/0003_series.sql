-- Each user's signup events, for "earliest user.signup per user" (signups per
-- day) and "users without any signup" (orphan activity) without reading
-- every signup event of the tenant: an index-only scan, or one probe per user.
CREATE INDEX events_signups_by_user ON events (tenant, user_id, ts_us)
    WHERE event = 'user.signup';
