"""What the metrics RPCs need, handed in by bootstrap."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from northstar_metrics.adapters.columnar import ColumnarEvents
from northstar_metrics.adapters.event_store import EventStore
from northstar_metrics.adapters.queries import ReadModel
from northstar_runtime.log import LogClient
from northstar_runtime.topology import Topology


@dataclass(frozen=True)
class MetricsDeps:
    """The read models and the log, for the servicer's RPC groups."""

    read_model: ReadModel
    events: EventStore
    pool: asyncpg.Pool
    log: LogClient
    topology: Topology
    # The columnar copy of `events` for Funnel and Trend; None: PostgreSQL answers them.
    columnar: ColumnarEvents | None = None
