"""The alerts service's settings."""

from __future__ import annotations

from northstar_runtime.config import ServiceSettings


class AlertsSettings(ServiceSettings):
    """Alerts uses the shared settings as they are (for now)."""
