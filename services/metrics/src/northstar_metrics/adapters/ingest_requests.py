"""Ingest's request summaries into `ingest_requests`.

The projection keeps what the event log does not otherwise show: events
ingest rejected (by field and rule) and the duplicates it answered without
storing them again. It reads `northstar.log.v1.RequestReceived` records from
the DOMAIN stream (`domain.ingest.<tenant>.received`).
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from northstar.log.v1 import log_pb2
from northstar_runtime.codec import SCHEMA_HEADER, TYPE_HEADER, UnknownRecord
from northstar_runtime.db import Connection
from northstar_runtime.projector import LogEntry

REQUEST_RECEIVED = "RequestReceived"
REQUEST_RECEIVED_SCHEMA = "1"
PROJECTION_NAME = "ingest_requests"


class IngestRequestsProjection:
    """One row per RequestReceived: its clocks, duplicates and rejections."""

    name = PROJECTION_NAME

    async def apply(self, conn: Connection, entries: Sequence[LogEntry]) -> None:
        """Insert the batch's request summaries; a redelivered one changes nothing."""
        rows = []
        for entry in entries:
            kind = entry.headers.get(TYPE_HEADER)
            if kind != REQUEST_RECEIVED:
                # Other records of the ingest service are not this read model's business.
                continue
            schema = entry.headers.get(SCHEMA_HEADER, REQUEST_RECEIVED_SCHEMA)
            if schema != REQUEST_RECEIVED_SCHEMA:
                raise UnknownRecord(f"not a RequestReceived v1: v{schema}")
            summary = log_pb2.RequestReceived.FromString(entry.data)
            rejections = [
                {"field": r.field, "rule": r.rule, "count": r.count} for r in summary.rejections
            ]
            rows.append(
                (
                    summary.tenant,
                    entry.seq,
                    summary.received_at_us,
                    summary.sent_at_us,
                    summary.accepted,
                    summary.duplicate,
                    orjson.dumps(rejections).decode(),
                )
            )
        if not rows:
            return
        await conn.executemany(
            "INSERT INTO ingest_requests (tenant, position, received_at_us, sent_at_us,"
            " accepted, duplicate, rejections) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)"
            " ON CONFLICT DO NOTHING",
            rows,
        )

    async def reset(self, conn: Connection) -> None:
        """Empty the read model, for a replay of the DOMAIN stream."""
        await conn.execute("TRUNCATE ingest_requests")
