"""Silences in the log: one subject per silence (`domain.alerts.<tenant>.silence.<id>`),
folded and appended with optimistic concurrency by the shared aggregate store."""

from __future__ import annotations

import orjson

from northstar_alerts.domain.silences import (
    SCHEMA_VERSION,
    SilenceEvent,
    SilenceState,
    end_of,
    event_from_json,
    event_to_json,
    evolve,
)
from northstar_alerts.domain.state import Silence
from northstar_runtime.aggregates import AggregateStore
from northstar_runtime.codec import SCHEMA_HEADER, UnknownRecord
from northstar_runtime.log import LogClient


def decode_event(data: bytes, headers: dict[str, str] | None) -> SilenceEvent:
    """A silence event from a log message; UnknownRecord for another schema."""
    schema = (headers or {}).get(SCHEMA_HEADER, SCHEMA_VERSION)
    if schema != SCHEMA_VERSION:
        raise UnknownRecord(f"silence event schema v{schema}")
    return event_from_json(orjson.loads(data))


class SilenceStore(AggregateStore[SilenceEvent, SilenceState]):
    """Loads a silence by folding its subject; appends changes with OCC."""

    def __init__(self, log: LogClient) -> None:
        super().__init__(
            log,
            service="alerts",
            aggregate="silence",
            noun="silence",
            exists_reason="SILENCE_EXISTS",
            schema_version=SCHEMA_VERSION,
            decode=decode_event,
            encode=lambda event: orjson.dumps(event_to_json(event)),
            evolve=evolve,
        )

    async def all(self, tenant: str) -> list[SilenceState]:
        """Every silence the tenant ever had, newest start first."""
        states = []
        for key in await self.keys(tenant):
            state, _ = await self.load(tenant, key)
            if state is not None:
                states.append(state)
        return sorted(states, key=lambda s: (-s.silence.starts_at, s.silence.silence_id))

    async def active(self, tenant: str, at: float) -> list[Silence]:
        """The silences muting at `at` (for the evaluator: `state.evaluate(..., silences)`)."""
        return [
            s.silence
            for s in await self.all(tenant)
            if s.silence.starts_at <= at < end_of(s.silence)
        ]
