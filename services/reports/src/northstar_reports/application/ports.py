"""What the application needs from its collaborators."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from northstar.reports.v1 import reports_pb2 as pb


class SectionSource(Protocol):
    """Gathers a report's sections from the services that own the numbers."""

    async def gather(
        self,
        *,
        tenant: str,
        schedule: pb.Schedule,
        period: pb.Period,
        sections: Sequence[pb.Section.ValueType],
    ) -> pb.Report:
        """A report with the asked sections filled and `errors` for those that failed;
        its summary and section list are left to the caller."""
        ...
