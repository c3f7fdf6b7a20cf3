-- An org's acquisition channel is the channel of the earliest user.signup carrying
-- its org_id (Revenue, CAC by channel): found by one index probe per org instead of
-- comparing every signup with the list of orgs.
CREATE INDEX events_signups_by_org ON events (tenant, org_id, ts_us)
    WHERE event = 'user.signup' AND org_id <> '';
