"""Gathering report sections over gRPC (a minimal stand-in until the real source lands)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from northstar.reports.v1 import reports_pb2 as pb


class GrpcSectionSource:
    """Gathers sections from metrics, experiments and alerts."""

    def __init__(
        self,
        *,
        metrics_address: str,
        experiments_address: str,
        alerts_address: str,
        service_key: str,
        deadline_s: float,
        tls: Any = None,
    ) -> None:
        self._addresses = (metrics_address, experiments_address, alerts_address)

    async def gather(
        self,
        *,
        tenant: str,
        schedule: pb.Schedule,
        period: pb.Period,
        sections: Sequence[pb.Section.ValueType],
    ) -> pb.Report:
        """A report whose every section is reported missing."""
        return pb.Report(
            errors=[pb.SectionError(section=s, message="sections: not wired") for s in sections]
        )

    async def close(self) -> None:
        """Nothing to close."""
