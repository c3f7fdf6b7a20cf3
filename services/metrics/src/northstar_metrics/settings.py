"""The metrics service's settings."""

from __future__ import annotations

from pydantic import Field

from northstar_runtime.config import ServiceSettings


class MetricsSettings(ServiceSettings):
    """Metrics adds the projector's batch size and partition range."""

    projector_batch_size: int = Field(default=2_000, ge=1, le=100_000)
    projector_partitions: str = Field(
        default="",
        description="partition range this replica projects, e.g. `0-7`; empty: all",
    )

    columnar_copy: bool = Field(
        default=True,
        description="keep an in-memory columnar copy of the events for Funnel and Trend",
    )
    columnar_memory_limit: str = Field(
        default="4GB", description="the columnar copy's memory limit (DuckDB's memory_limit)"
    )

    columnar_compact_min_rows: int = Field(
        default=50_000,
        ge=1,
        description="rows appended to the columnar copy before it is rewritten sorted",
    )

    def partition_range(self) -> range | None:
        """The partitions of `projector_partitions`, or None for all."""
        if not self.projector_partitions:
            return None
        low, _, high = self.projector_partitions.partition("-")
        first, last = int(low), int(high or low)
        if not 0 <= first <= last < self.northstar_partitions:
            raise ValueError(f"PROJECTOR_PARTITIONS {self.projector_partitions!r} out of range")
        return range(first, last + 1)
