"""How the world reaches the ingest service."""
