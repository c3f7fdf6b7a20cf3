"""Events as the client builds them, with idempotency keys fixed before the first send."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from google.protobuf import timestamp_pb2

from northstar.ingest.v1 import ingest_pb2

__all__ = ["Event", "new_event_id", "to_timestamp"]


def new_event_id() -> str:
    """A UUIDv7 (RFC 9562): time-ordered, random enough to never collide."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & (2**48 - 1)) << 80
    value |= 0x7 << 76  # version
    value |= (rand >> 68) << 64  # 12 random bits (rand_a)
    value |= 0b10 << 62  # variant
    value |= rand & (2**62 - 1)  # 62 random bits (rand_b)
    return str(uuid.UUID(int=value))


def to_timestamp(value: datetime | float | int) -> timestamp_pb2.Timestamp:
    """A protobuf Timestamp from an aware datetime (naive means UTC) or epoch seconds."""
    ts = timestamp_pb2.Timestamp()
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        ts.FromDatetime(value.astimezone(UTC))
    else:
        ts.FromMicroseconds(round(float(value) * 1_000_000))
    return ts


@dataclass(frozen=True, slots=True)
class Event:
    """One product event. `event_id` is the idempotency key: a retry resends the same one."""

    event: str
    user_id: str = ""
    org_id: str = ""
    session_id: str = ""
    timestamp: datetime | None = None
    properties: Mapping[str, Any] = field(default_factory=dict)
    event_id: str = field(default_factory=new_event_id)

    def to_proto(self) -> ingest_pb2.Event:
        """The wire form; properties travel as compact JSON (no float rounding of ints)."""
        message = ingest_pb2.Event(
            event_id=self.event_id,
            event=self.event,
            user_id=self.user_id,
            org_id=self.org_id,
            session_id=self.session_id,
        )
        if self.timestamp is not None:
            message.timestamp.CopyFrom(to_timestamp(self.timestamp))
        if self.properties:
            message.properties_json = json.dumps(
                dict(self.properties), separators=(",", ":"), ensure_ascii=False, default=str
            )
        return message
