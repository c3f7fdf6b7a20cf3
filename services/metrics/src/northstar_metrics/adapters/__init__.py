"""The metrics service's adapters: its PostgreSQL read models."""
