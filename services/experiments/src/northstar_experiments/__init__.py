"""Northstar experiments service: definitions, assignment and results."""
