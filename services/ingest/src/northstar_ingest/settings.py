"""The ingest service's settings."""

from __future__ import annotations

from pydantic import Field

from northstar_runtime.config import ServiceSettings


class IngestSettings(ServiceSettings):
    """Ingest adds rate limits, the recent-id memory and its publish timeout."""

    ingest_rate_limit: float = Field(
        default=200_000.0, ge=0, description="events per second per tenant; 0: unlimited"
    )
    ingest_rate_burst: float = Field(default=400_000.0, ge=1)
    ingest_recent_ids: int = Field(default=200_000, ge=0)
    ingest_publish_timeout: float = Field(default=5.0, gt=0)
