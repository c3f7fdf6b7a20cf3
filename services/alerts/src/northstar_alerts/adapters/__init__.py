"""Adapters of the alerts service: the log and the database."""
