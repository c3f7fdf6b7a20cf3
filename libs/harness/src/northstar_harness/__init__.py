"""Real servers and test helpers for Northstar: NATS, PostgreSQL, the dev stack."""
