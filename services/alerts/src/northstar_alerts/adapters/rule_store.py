"""Alert rules in the log: one subject per rule (`domain.alerts.<tenant>.rule.<rule_id>`), folded
and appended with optimistic concurrency by the shared aggregate store."""

from __future__ import annotations

import orjson

from northstar_alerts.domain.rule_events import (
    SCHEMA_VERSION,
    RuleEvent,
    RuleState,
    event_from_json,
    event_to_json,
    evolve,
)
from northstar_runtime.aggregates import AggregateStore
from northstar_runtime.codec import SCHEMA_HEADER, UnknownRecord
from northstar_runtime.log import LogClient


def decode_event(data: bytes, headers: dict[str, str] | None) -> RuleEvent:
    """A rule event from a log message; UnknownRecord for another schema."""
    schema = (headers or {}).get(SCHEMA_HEADER, SCHEMA_VERSION)
    if schema != SCHEMA_VERSION:
        raise UnknownRecord(f"alert rule event schema v{schema}")
    return event_from_json(orjson.loads(data))


class RuleStore(AggregateStore[RuleEvent, RuleState]):
    """Loads a rule by folding its subject; appends changes with OCC."""

    def __init__(self, log: LogClient) -> None:
        super().__init__(
            log,
            service="alerts",
            aggregate="rule",
            noun="alert rule",
            exists_reason="RULE_EXISTS",
            schema_version=SCHEMA_VERSION,
            decode=decode_event,
            encode=lambda event: orjson.dumps(event_to_json(event)),
            evolve=evolve,
        )

    async def rule_ids(self, tenant: str) -> list[str]:
        """The ids of every rule the tenant ever had, from the stream's subject list."""
        return await self.keys(tenant)
