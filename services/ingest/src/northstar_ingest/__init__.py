"""The ingest service: product events in, durably appended to the log."""
