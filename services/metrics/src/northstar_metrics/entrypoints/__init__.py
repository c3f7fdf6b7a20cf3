"""How the world reaches the metrics service."""
