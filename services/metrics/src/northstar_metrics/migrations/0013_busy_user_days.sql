-- The only users who can be suspected bots (DataQuality): 601 events within 60 seconds
-- lie on at most two consecutive activity days, so one of those days holds at least
-- 301 of the user's events. Partial, so it holds those few days where `user_days` has
-- millions, and a period's bot candidates no longer depend on how many events it
-- received (a backfill receives every user's history on one day).
-- The constant is domain/quality.py BUSY_DAY_MIN_EVENTS; the query repeats it literally,
-- as PostgreSQL uses a partial index only for a predicate it can prove at planning.
CREATE INDEX IF NOT EXISTS user_days_busy ON user_days (tenant, user_id) WHERE events >= 301;
