"""Northstar alerts service: rules over metrics, alert state, notifications."""
