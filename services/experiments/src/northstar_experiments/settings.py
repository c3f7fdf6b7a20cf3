"""The experiments service's settings."""

from __future__ import annotations

from pydantic import Field

from northstar_runtime.config import ServiceSettings


class ExperimentsSettings(ServiceSettings):
    """Experiments adds the projector's batch size."""

    projector_batch_size: int = Field(default=2_000, ge=1, le=100_000)
