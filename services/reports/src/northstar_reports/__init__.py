"""Northstar reports service: scheduled business reports, rendered and delivered."""
