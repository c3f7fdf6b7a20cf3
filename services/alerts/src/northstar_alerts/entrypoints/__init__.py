"""Entrypoints of the alerts service."""
