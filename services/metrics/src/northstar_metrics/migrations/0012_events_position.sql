-- The columnar copy of `events` (adapters/columnar.py) follows it by log position.
CREATE INDEX IF NOT EXISTS events_by_position ON events (position);
