-- Each user's first-seen events per activity day (UTC day of `timestamp`): a 60-second
-- window lies within two consecutive days, so a user whose busiest two consecutive
-- days hold at most 600 events cannot be a suspected bot in any period (DataQuality
-- reads only the others' timestamps). Filled by the rebuild that projection version 4
-- asks for; 0 until then.
ALTER TABLE user_days ADD COLUMN events bigint NOT NULL DEFAULT 0;
